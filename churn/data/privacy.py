"""Contact details: column names and cell values that look like names, e-mail addresses or phone numbers.

churn holds no contact details (its lists go to people; its scores, logs and warehouse are kept
for months), so the contract looks for them in every table, by column name and by value:

- a column named like a contact detail (`email`, `e-mail`, `phone`, `mobile`, `first_name`,
  `customer_name`, `address`, `post_code`, `billing_email`, ...);
- a cell holding an e-mail address anywhere in it (`a.b@shop.example`, `call bob@x.org`);
- a cell that is a phone number: international (`+44 20 7946 0958`, `0044 20 7946 0958`), national
  with separators (`020 7946 0958`, `(020) 7946-0958`) or North American (`(555) 123-4567`,
  `555.123.4567`), with 7 to 15 digits. Dates (`01-03-2017`, `2017/03/01`) are not phones. A bare
  run of digits (`02079460958`) is not taken for a phone: it cannot be told from a code or an
  amount, so a column of such numbers is only found by its name.

The patterns are RE2 (DuckDB's and Arrow's regular expressions), so a Parquet file is checked by
SQL where it lies (`sql`) and a frame by Arrow (`masks`), with the same results, column-wise.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["contact_column", "masks", "sql", "EMAIL", "PHONES", "NOT_PHONES"]

# Matched against the lower-cased column name with separators turned into "_".
_CONTACT_COLUMN = re.compile(
    r"^(?:(?:first|last|full|given|family|sur|customer|contact|user|client)_?)?name$"
    r"|^(?:e_?mail|phone|mobile|telephone|address|street|post_?code|postal_?code|zip)"
    r"(?:_?(?:code|number|no|address|phone|line_?\d*|\d+))?$"
    r"|^\w+_(?:e_?mail|phone|mobile|telephone|address|street|post_?code|postal_?code|zip_?code)$"
)
EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PHONES = (
    r"^\s*(?:\+|00)[1-9][0-9 ()./-]{5,}[0-9]\s*$",  # international
    r"^\s*\(?0[0-9]{1,4}\)?[ ./-][0-9]{2,4}(?:[ ./-][0-9]{2,4}){1,3}\s*$",  # national, with separators
    r"^\s*\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\s*$",  # North American
)
NOT_PHONES = (r"^\s*[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}\s*$", r"^\s*[0-9]{4}[./-][0-9]{1,2}[./-][0-9]{1,2}")
_DIGITS = (7, 15)
# A phone starts with "+", "(" or a digit, maybe after spaces (code points 9, 32, 40, 43, 48-57): a cheap
# test before the patterns.
_PHONE_START = "(9, 32, 40, 43, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57)"


def contact_column(name: str) -> bool:
    """True when a column's name says it holds names, e-mails, phones or addresses."""
    return bool(_CONTACT_COLUMN.match(re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql(expr: str, phones: bool = True) -> str:
    """A SQL condition (DuckDB) true where the text `expr` holds an e-mail address (or, with `phones`, is a phone)."""
    # CASE, not AND: DuckDB evaluates both sides of an AND outside a WHERE clause, and the cheap
    # tests (an "@", the first character, the length) rule out nearly every cell of a large table.
    email = f"(CASE WHEN contains({expr}, '@') THEN regexp_matches({expr}, {_literal(EMAIL)}) ELSE false END)"
    if not phones:
        return email
    shapes = " OR ".join(f"regexp_matches({expr}, {_literal(p)})" for p in PHONES)
    not_dates = " AND ".join(f"NOT regexp_matches({expr}, {_literal(p)})" for p in NOT_PHONES)
    digits = f"length(regexp_replace({expr}, '[^0-9]', '', 'g')) BETWEEN {_DIGITS[0]} AND {_DIGITS[1]}"
    phone = (f"(CASE WHEN ascii({expr}) IN {_PHONE_START} AND length({expr}) BETWEEN {_DIGITS[0]} AND 40 "
             f"THEN ({shapes}) AND {not_dates} AND {digits} ELSE false END)")
    return f"({email} OR {phone})"


def masks(values: pa.Array | object, phones: bool = True) -> np.ndarray:
    """Per cell of a text column (Arrow array or anything `pa.array` takes), True where `sql` would be true."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.large_string(), from_pandas=True)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.large_string())
    found = pc.match_substring_regex(arr, EMAIL)
    if phones:
        shaped = pc.less_equal(pc.utf8_length(arr), 40)
        shaped = pc.and_(shaped, pc.or_(pc.or_(*[pc.match_substring_regex(arr, p) for p in PHONES[:2]]),
                                        pc.match_substring_regex(arr, PHONES[2])))
        for p in NOT_PHONES:
            shaped = pc.and_(shaped, pc.invert(pc.match_substring_regex(arr, p)))
        digits = pc.utf8_length(pc.replace_substring_regex(arr, "[^0-9]", ""))
        counted = pc.and_(pc.greater_equal(digits, _DIGITS[0]), pc.less_equal(digits, _DIGITS[1]))
        found = pc.or_(found, pc.and_(shaped, counted))
    return pc.fill_null(found, False).to_numpy(zero_copy_only=False)
