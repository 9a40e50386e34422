"""A seeded generator of shop data in the churn contract, with known (planted) churn drivers.

Every customer signs up on a day in the first 80% of the period, buys as a Poisson process at
a base rate (orders per 30 days, gamma distributed, 0.5-8) with a typical order value
(lognormal, higher in the family and business segments), and carries
traits: `price_sensitive` (~30%), `service_hurt` (~20%), `variety_seeker` (~25%). Churn is a
competing-risks draw: a drift hazard (higher for infrequent buyers) plus one hazard per trait,
all scaled by a per-customer frailty. The first to fire sets `churn_ts` and `churn_reason`
(drift, service, price, variety); after `churn_ts` the customer never orders again. On the
default two-year period that gives about 15 orders per customer and 45% churners.

Warning signs planted before `churn_ts`, so that a model can learn them from the data alone:

- every churner: the purchase rate drops (x0.3-0.6) over the last 60-120 days
  (logins and visits drop with it);
- `service` churners: complaints and support tickets in the last 8 weeks, and about one
  order in seven returned (each returned order, anywhere, comes with a `return_request`);
- `price` churners: price-sensitive customers order with coupons and large discounts, until a
  discount withdrawal 60-120 days before churning, after which they pay full price;
- `variety` churners: variety seekers buy more lines from many categories, until their
  breadth falls to a few favourite products 60-120 days before churning.

Some customers who do not churn see the same withdrawal or breadth drop for a while (and a
few complain), so the signs predict churn without giving it away. `SyntheticData.truth` holds
every planted parameter per customer; it is not part of a data directory.

Ground-truth win-back responses (`SyntheticData.responses`): for a list sent on the last day of
the period, each customer's probability of buying again within `response_horizon_days` without
any action and with each action. An action brings back a share (its uplift) of those who would
not have come back: large when the action meets the customer's trait (service-hurt customers
answer a callback, price-sensitive ones a discount, variety seekers a trial), small otherwise,
varying from customer to customer, and fading the longer a churner has been gone.

A planted season (`season_amplitude` > 0): every customer's purchase rate is multiplied by
1 + A cos(2 pi (day of year - `season_peak_day`) / 365.25), so the share of customers with no
purchase in a window (churned by the label) rises in the low season and falls in the peak, as
at a seasonal retailer. The default, no season, leaves every table as it was.

Everything is vectorized NumPy (no per-customer Python loop); independent random streams for
customers, orders, items, events, suppressions and responses make `items=False` /
`events=False` leave the other tables unchanged, and the same `random_state` gives
bit-identical frames (the responses' stream was added last: the tables did not change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.data.io import write_tables

__all__ = ["SyntheticData", "generate", "write"]

CATEGORIES = (
    "grocery", "produce", "dairy", "meat", "bakery", "frozen", "beverages", "snacks",
    "household", "personal_care", "baby", "pet", "health", "home", "electronics",
)  # fmt: skip
REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("web", "app", "store")
SEGMENTS = ("consumer", "family", "business")
STATUSES = ("completed", "returned", "cancelled")
EVENT_TYPES = ("visit", "login", "email_open", "support_ticket", "complaint", "return_request")
SUPPRESSION_REASONS = ("opt_out", "do_not_contact", "deleted", "complaint")
CHURN_REASONS = ("drift", "service", "price", "variety")
# Win-back actions and the trait each one answers (the actions of churn.config.ACTIONS).
RESPONSE_TRAITS = {"callback": "service_hurt", "exclusive_discount": "price_sensitive", "trial": "variety_seeker"}
_UPLIFT_MATCHED = 0.35  # share of would-be churners won back when the action meets the trait
_UPLIFT_OTHER = 0.03  # ... and when it does not
_UPLIFT_SPREAD = 0.3  # lognormal sigma of each customer's responsiveness
_UPLIFT_FADE_DAYS = 90  # a churner gone this many days is e (2.7) times harder to win back

_DAY = 86_400
_N_PRODUCTS = 2_000
_N_FAVOURITES = 8  # favourite products per customer: what a customer buys when not exploring
_RATE_UNIT = 30 * _DAY  # rates are given per 30 days
_PRECURSOR_DAYS = (60, 120)  # warning signs start this many days before churn
_SERVICE_BURST_DAYS = 56
# Per-order draws run in blocks of this many orders: the blocks' temporaries are small enough
# for the allocator to reuse, instead of fresh memory for each of many huge temporaries.
_BLOCK = 1 << 21


@dataclass(frozen=True)
class SyntheticData:
    """Contract tables (orders, order_items, customers, events, suppressions) and the planted truth.

    `truth` has one row per customer: `customer_id`, `signup_ts`, `rate_30d` (orders per 30
    days while active), `order_value` (typical gross order value), the traits
    `price_sensitive`, `service_hurt`, `variety_seeker`, `churn_hazard_30d` (total, frailty
    included), `churn_ts` and `churn_reason` (missing when the customer still buys at the end),
    `decay_start_ts` and `decay_factor` (the falling purchase rate before churn), and the
    `discount_cut_*` / `breadth_drop_*` windows (start, end) when the customer had one.

    `responses` has one row per customer: `customer_id`, `p_back_none` (buys again within the
    response horizon after the last day, with no action) and `p_back_<action>` per action;
    `responses_at` gives the same for a list sent on any day of the period.
    """

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    responses: pd.DataFrame | None = None
    _latent: _Latent | None = field(default=None, repr=False, compare=False)

    def responses_at(self, list_date: object, horizon_days: int = 90) -> pd.DataFrame:
        """Ground-truth responses to a list sent at the end of `list_date`, for the customers signed up by then.

        Same columns as `responses`; what is known of each customer is their state on that day
        (churned or not, how long gone, their purchase rate then).
        """
        if self._latent is None:
            raise ValueError("this SyntheticData carries no latent state: make it with synthetic.generate")
        return _responses_frame(self._latent, horizon_days, pd.Timestamp(list_date))


def generate(
    n_customers: int = 1000,
    start: str = "2023-01-01",
    end: str = "2024-12-31",
    random_state: int = 0,
    items: bool = True,
    events: bool = True,
    response_horizon_days: int = 90,
    season_amplitude: float = 0.0,
    season_peak_day: int = 300,
) -> SyntheticData:
    """Generate `n_customers` customers' data from `start` to `end` (both days included).

    `items=False` / `events=False` leave out order_items / events (faster at benchmark scale).
    `response_horizon_days`: the window of the ground-truth win-back responses.
    `season_amplitude` (0 to 0.95) and `season_peak_day` (day of the year, 300: late October):
    the planted season of the purchase rate (0: none).
    """
    if not 0 <= season_amplitude < 1:
        raise ValueError(f"season_amplitude must be in [0, 1), got {season_amplitude}")
    start_ts = pd.Timestamp(start).normalize()
    n_days = (pd.Timestamp(end).normalize() - start_ts).days + 1
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if n_days < 30:
        raise ValueError(f"the period {start}..{end} is too short: give at least 30 days")
    # Children of a SeedSequence depend only on their position: a stream added at the end
    # leaves the first six, hence every table, exactly as they were.
    streams = np.random.SeedSequence(random_state).spawn(7)
    rng_customers, rng_orders, rng_items, rng_events, rng_suppressions, rng_catalogue, rng_responses = (
        np.random.default_rng(s) for s in streams
    )
    people = _draw_customers(rng_customers, n_customers, n_days * _DAY)
    season = _Season(season_amplitude, season_peak_day, start_ts)
    orders = _draw_orders(rng_orders, people, season)
    to_ts = _Clock(start_ts)
    customer_ids = _ids("c", np.arange(n_customers), max(6, len(str(n_customers - 1))))
    order_ids = _ids("o", np.arange(len(orders.ts)), max(8, len(str(len(orders.ts) - 1))))

    tables = {"orders": _orders_frame(orders, customer_ids, order_ids, to_ts)}
    if items:
        catalogue = _draw_catalogue(rng_catalogue)
        tables["order_items"] = _order_items_frame(rng_items, people, orders, order_ids, catalogue)
    tables["customers"] = pd.DataFrame(
        {
            "customer_id": _string_array(customer_ids),
            "signup_ts": to_ts(people.signup),
            "region": _labels(REGIONS, people.region),
            "channel": _labels(CHANNELS, people.channel),
            "segment": _labels(SEGMENTS, people.segment),
        },
        copy=False,
    )
    if events:
        tables["events"] = _events_frame(rng_events, people, orders, customer_ids, to_ts)
    tables["suppressions"] = _suppressions_frame(rng_suppressions, people, customer_ids, to_ts)
    # Each customer's responsiveness to each action: fixed, so that lists on any day agree.
    responsiveness = rng_responses.lognormal(0.0, _UPLIFT_SPREAD, (len(RESPONSE_TRAITS), n_customers))
    latent = _Latent(people, customer_ids, season, responsiveness)
    responses = _responses_frame(latent, response_horizon_days, start_ts + pd.Timedelta(days=n_days - 1))
    return SyntheticData(tables=tables, truth=_truth_frame(people, customer_ids, to_ts), responses=responses,
                         _latent=latent)


def write(data: SyntheticData, out_dir: str | Path, fmt: str = "parquet", truth: bool = False) -> dict[str, Path]:
    """Write the tables into `out_dir` (parquet or csv); with `truth=True` also `_truth.parquet`
    and `_responses.parquet`."""
    paths = write_tables(data.tables, out_dir, fmt=fmt)
    for name, frame in (("_truth", data.truth), ("_responses", data.responses)):
        path = Path(out_dir) / f"{name}.parquet"
        if truth and frame is not None:
            frame.to_parquet(path, index=False)
            paths[name] = path
        else:  # a stale truth from an earlier write would not match these tables
            path.unlink(missing_ok=True)
    return paths


# --- customers and their latent parameters (times are int64 seconds since `start`) ----------


@dataclass
class _Customers:
    signup: np.ndarray
    horizon: int  # end of the period
    rate: np.ndarray  # orders per 30 days while active
    value: np.ndarray  # typical gross order value
    price_sensitive: np.ndarray
    service_hurt: np.ndarray
    variety_seeker: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    segment: np.ndarray
    email_rate: np.ndarray  # email opens per 30 days
    hazard: np.ndarray  # total churn hazard per 30 days
    churn: np.ndarray  # churn time, or `horizon` for customers still buying at the end
    churned: np.ndarray
    reason: np.ndarray  # index into CHURN_REASONS, -1 when not churned
    decay_start: np.ndarray  # purchase rate x decay_factor from here to churn
    decay_factor: np.ndarray
    discount_cut: tuple[np.ndarray, np.ndarray]  # [start, end) windows without discounts
    breadth_drop: tuple[np.ndarray, np.ndarray]  # [start, end) windows of narrow baskets
    service_burst: tuple[np.ndarray, np.ndarray]  # [start, end) windows of complaints


def _draw_customers(rng: np.random.Generator, n: int, horizon: int) -> _Customers:
    signup = (rng.random(n) * 0.8 * horizon).astype(np.int64) // _DAY * _DAY + _time_of_day(rng, n)
    rate = np.clip(rng.gamma(2.0, 0.75, n), 0.5, 8.0)
    segment = rng.choice(len(SEGMENTS), n, p=[0.65, 0.25, 0.10]).astype(np.int8)
    value = rng.lognormal(np.log(40.0), 0.5, n) * np.array([1.0, 1.3, 1.8])[segment]
    price_sensitive = rng.random(n) < 0.30
    service_hurt = rng.random(n) < 0.20
    variety_seeker = rng.random(n) < 0.25

    # Competing risks per 30 days: drift (infrequent buyers drift away more) and one per trait.
    frailty = rng.lognormal(0.0, 0.4, n)
    hazards = frailty[:, None] * np.column_stack(
        [
            0.015 * (rate / 1.5) ** -0.5,
            0.060 * service_hurt,
            0.035 * price_sensitive,
            0.035 * variety_seeker,
        ]
    )
    with np.errstate(divide="ignore"):
        waits = rng.exponential(1.0, (n, len(CHURN_REASONS))) / hazards * _RATE_UNIT
    first = waits.argmin(axis=1)
    churn_at = signup + np.minimum(waits.min(axis=1), 2.0 * horizon).astype(np.int64)
    churned = churn_at < horizon
    churn = np.where(churned, churn_at, horizon)
    reason = np.where(churned, first, -1).astype(np.int8)

    def lead_in() -> np.ndarray:
        return rng.integers(*_PRECURSOR_DAYS, n, endpoint=True) * _DAY

    decay_start = np.where(churned, np.maximum(signup, churn - lead_in()), horizon)
    decay_factor = rng.uniform(0.3, 0.6, n)
    return _Customers(
        signup=signup,
        horizon=horizon,
        rate=rate,
        value=value,
        price_sensitive=price_sensitive,
        service_hurt=service_hurt,
        variety_seeker=variety_seeker,
        region=rng.integers(0, len(REGIONS), n).astype(np.int8),
        channel=rng.choice(len(CHANNELS), n, p=[0.45, 0.35, 0.20]).astype(np.int8),
        segment=segment,
        email_rate=rng.uniform(0.5, 6.0, n),
        hazard=hazards.sum(axis=1),
        churn=churn,
        churned=churned,
        reason=reason,
        decay_start=decay_start,
        decay_factor=decay_factor,
        discount_cut=_sign_windows(rng, price_sensitive, reason == 2, signup, churn, lead_in()),
        breadth_drop=_sign_windows(rng, variety_seeker, reason == 3, signup, churn, lead_in()),
        service_burst=(
            np.where(reason == 1, np.maximum(signup, churn - _SERVICE_BURST_DAYS * _DAY), horizon),
            np.where(reason == 1, churn, horizon),
        ),
    )


def _sign_windows(rng, trait, fired, signup, churn, lead_in):
    """Warning-sign windows: up to churn for customers whose trait fired, else a harmless episode.

    15% of the trait's other customers get an episode of the same length at a random time,
    after which they behave as before: the sign predicts churn without giving it away.
    """
    n = len(trait)
    episode = trait & ~fired & (rng.random(n) < 0.15)
    episode_start = signup + (rng.random(n) * np.maximum(churn - signup, 0)).astype(np.int64)
    start = np.where(fired, np.maximum(signup, churn - lead_in), np.where(episode, episode_start, churn))
    end = np.where(fired, churn, np.where(episode, np.minimum(episode_start + lead_in, churn), churn))
    return start, end


# Sampling by table look-up: a uniform 16-bit integer indexes 65,536 quantiles of the wanted
# distribution. Much faster than NumPy's samplers at tens of millions of draws.
_QUANTILES = 1 << 16


def _quantile_table(pmf: np.ndarray, dtype=np.int64) -> np.ndarray:
    cdf = np.cumsum(pmf) / np.sum(pmf)
    return np.minimum(np.searchsorted(cdf, (np.arange(_QUANTILES) + 0.5) / _QUANTILES), len(pmf) - 1).astype(dtype)


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    return np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


def _hour_pmf() -> np.ndarray:
    """Per second of the day: a daytime and an evening peak, nothing before 06:00."""
    hour = np.arange(_DAY) / 3600

    def peak(mean, sd):
        return np.exp(-0.5 * ((hour - mean) / sd) ** 2) / sd

    return np.where(hour >= 6, 0.65 * peak(12.5, 2.5) + 0.35 * peak(19.5, 1.5), 0.0)


_TIME_OF_DAY = _quantile_table(_hour_pmf())
# order lines: variety seekers buying broadly 2-6 (mean 4), everyone else 1-6 (mean 2.5)
_LINES_BROAD = _quantile_table(np.concatenate([[0, 0], _binomial_pmf(4, 0.5)]), np.int8)
_LINES_NARROW = _quantile_table(np.concatenate([[0], _binomial_pmf(5, 0.3)]), np.int8)
# extra units on top of one per line: binomial(lines, 0.25), one table row per number of lines
_EXTRA_UNITS = np.stack([_quantile_table(_binomial_pmf(lines, 0.25), np.int8) for lines in range(7)])


def _uniform16(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, _QUANTILES, n, dtype=np.uint16)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after midnight, peaking around midday and in the evening."""
    return _TIME_OF_DAY[_uniform16(rng, n)]


def _poisson_times(rng, owner, start, end, rate, daily=False):
    """Event times of Poisson processes, one per segment [start, end) at `rate` per 30 days.

    Returns (owner, time) per event: the owner of its segment and an int64 time in seconds.
    `daily=True` moves each time to a plausible time of day on the same day, unless that
    leaves its segment.
    """
    length = np.maximum(end - start, 0)
    counts = rng.poisson(rate * length / _RATE_UNIT)
    times = np.empty(int(counts.sum()), dtype=np.int64)
    done = np.cumsum(counts)
    bounds = np.unique(np.r_[0, np.searchsorted(done, np.arange(_BLOCK, len(times), _BLOCK)), len(counts)])
    for first, last in zip(bounds[:-1], bounds[1:]):  # blocks of segments, ~_BLOCK events each
        k = counts[first:last]
        starts, lengths = np.repeat(start[first:last], k), np.repeat(length[first:last], k)
        offsets = (rng.random(len(starts)) * lengths).astype(np.int64)
        if daily:
            moved = (starts + offsets) // _DAY * _DAY + _time_of_day(rng, len(starts)) - starts
            offsets = np.where((moved >= 0) & (moved < lengths), moved, offsets)
        times[done[first] - k[0] : done[last - 1]] = starts + offsets
    return np.repeat(owner, counts), times


def _sort_by_time(owner, times):
    """Order rows by time (ties by generation order) with a sort whose result is unique."""
    n = len(times)
    if not n or int(times.max()) >= (2**62) // n:
        order = np.argsort(times, kind="stable")
        return owner[order], times[order]
    keys = times * n  # + row number: unique keys, so any sort algorithm gives the same result
    for first in range(0, n, _BLOCK):
        keys[first : first + _BLOCK] += np.arange(first, min(first + _BLOCK, n))
    keys.sort()
    order = keys % n
    keys //= n
    return owner[order], keys


# --- orders ----------------------------------------------------------------------------------


@dataclass
class _Orders:
    customer: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    discount: np.ndarray
    coupon_used: np.ndarray
    lines: np.ndarray  # order lines (distinct products) in the order
    extra_units: np.ndarray  # n_items = lines + extra_units
    broad: np.ndarray  # a variety seeker buying broadly (not in a breadth drop)
    channel: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class _Season:
    """The planted season: the purchase rate times 1 + A cos(2 pi (day of year - peak) / 365.25)."""

    amplitude: float
    peak_day: int
    start: pd.Timestamp

    def factor(self, seconds: np.ndarray) -> np.ndarray:
        """The rate multiplier at times given in seconds since the start of the period."""
        day_of_year = self.start.day_of_year - 1 + seconds / _DAY
        return 1 + self.amplitude * np.cos(2 * np.pi * (day_of_year - self.peak_day) / 365.25)

    def mean_factor(self, start: int, days: int) -> float:
        """The multiplier's mean over `days` days from `start` (seconds since the start of the period)."""
        return float(self.factor(start + np.arange(days) * _DAY + _DAY // 2).mean())


def _draw_orders(rng: np.random.Generator, p: _Customers, season: _Season | None = None) -> _Orders:
    everyone = np.arange(len(p.signup), dtype=np.int32)
    peak = 1 + (season.amplitude if season else 0.0)
    owner, ts = _poisson_times(
        rng,
        np.concatenate([everyone, everyone]),
        np.concatenate([p.signup, p.decay_start]),
        np.concatenate([p.decay_start, p.churn]),
        peak * np.concatenate([p.rate, p.rate * p.decay_factor]),
        daily=True,
    )
    if peak > 1:  # thinning: drawn at the peak rate, each order kept with probability factor / peak
        kept = rng.random(len(ts)) * peak < season.factor(ts)
        owner, ts = owner[kept], ts[kept]
    c, ts = _sort_by_time(owner, ts)
    n = len(ts)
    orders = _Orders(
        customer=c,
        ts=ts,
        amount=np.empty(n),
        discount=np.empty(n),
        coupon_used=np.empty(n, dtype=bool),
        lines=np.empty(n, dtype=np.int8),
        extra_units=np.empty(n, dtype=np.int8),
        broad=np.empty(n, dtype=bool),
        channel=np.empty(n, dtype=np.int8),
        status=np.empty(n, dtype=np.int8),
    )
    for first in range(0, n, _BLOCK):
        _fill_orders(rng, p, orders, slice(first, first + _BLOCK))
    return orders


# Discount share of the gross order value, uniform in [low, low + width), by (on deal, coupon used).
_SHARE_LOW = np.array([[0.0, 0.05], [0.0, 0.15]])
_SHARE_WIDTH = np.array([[0.03, 0.10], [0.05, 0.20]])


def _fill_orders(rng: np.random.Generator, p: _Customers, o: _Orders, rows: slice) -> None:
    """Draw amounts, discounts, lines, channel and status for a block of orders."""
    c, ts = o.customer[rows], o.ts[rows]
    n = len(ts)

    # Price-sensitive customers use coupons and big discounts, except during a discount cut.
    on_deal = p.price_sensitive[c] & ~_inside(ts, c, p.discount_cut)
    coupon_used = rng.random(n) < np.where(on_deal, 0.60, 0.07)
    share = _SHARE_LOW[on_deal.view(np.int8), coupon_used.view(np.int8)] + rng.random(n) * _SHARE_WIDTH[
        on_deal.view(np.int8), coupon_used.view(np.int8)
    ]
    gross = np.round(p.value[c] * rng.lognormal(-0.06, 0.35, n), 2)
    o.discount[rows] = discount = np.round(gross * share, 2)
    o.amount[rows] = np.round(gross - discount, 2)
    o.coupon_used[rows] = coupon_used

    o.broad[rows] = broad = p.variety_seeker[c] & ~_inside(ts, c, p.breadth_drop)
    u = _uniform16(rng, n)
    o.lines[rows] = lines = np.where(broad, _LINES_BROAD[u], _LINES_NARROW[u])
    o.extra_units[rows] = _EXTRA_UNITS[lines, _uniform16(rng, n)]

    o.channel[rows] = np.where(rng.random(n) < 0.8, p.channel[c], rng.integers(0, len(CHANNELS), n))
    # returned ~2% (15% in the weeks before a service churn), cancelled 1%
    u = rng.random(n) - np.where(_inside(ts, c, p.service_burst), 0.15, 0.02)
    o.status[rows] = np.where(u < 0, 1, np.where(u < 0.01, 2, 0))


def _inside(ts: np.ndarray, c: np.ndarray, window: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Whether each time `ts` falls in its customer's [start, end) window."""
    start, end = window
    candidates = np.flatnonzero((end > start)[c])  # few customers have a window at all
    inside = np.zeros(len(ts), dtype=bool)
    owner = c[candidates]
    inside[candidates] = (ts[candidates] >= start[owner]) & (ts[candidates] < end[owner])
    return inside


def _orders_frame(o: _Orders, customer_ids: pa.Array, order_ids: pa.Array, to_ts) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": _take(customer_ids, o.customer),
            "order_id": _string_array(order_ids),
            "order_ts": to_ts(o.ts),
            "amount": o.amount,
            "discount": o.discount,
            "coupon_used": o.coupon_used,
            "n_items": (o.lines + o.extra_units).astype(np.int64),
            "channel": _labels(CHANNELS, o.channel),
            "status": _labels(STATUSES, o.status),
        },
        copy=False,
    )


# --- order items -----------------------------------------------------------------------------


@dataclass
class _Catalogue:
    category: np.ndarray  # per product, sorted
    price: np.ndarray  # relative unit price
    first: np.ndarray  # per category: index of its first product
    size: np.ndarray  # per category: number of products
    popularity: np.ndarray  # per category: share of favourite picks


def _draw_catalogue(rng: np.random.Generator) -> _Catalogue:
    popularity = rng.dirichlet(np.full(len(CATEGORIES), 3.0))
    size = 1 + rng.multinomial(_N_PRODUCTS - len(CATEGORIES), popularity)
    return _Catalogue(
        category=np.repeat(np.arange(len(CATEGORIES)), size),
        price=rng.lognormal(0.0, 0.6, _N_PRODUCTS),
        first=np.concatenate([[0], np.cumsum(size)[:-1]]),
        size=size,
        popularity=popularity,
    )


def _order_items_frame(rng, p: _Customers, o: _Orders, order_ids: pa.Array, cat: _Catalogue) -> pd.DataFrame:
    n_customers = len(p.signup)
    favourite_category = rng.choice(len(CATEGORIES), (n_customers, 3), p=cat.popularity)
    slot_category = np.take_along_axis(
        favourite_category, rng.integers(0, 3, (n_customers, _N_FAVOURITES)), axis=1
    )
    favourites = cat.first[slot_category] + (rng.random(slot_category.shape) * cat.size[slot_category]).astype(
        np.int64
    )

    order = np.repeat(np.arange(len(o.ts)), o.lines)
    n = len(order)
    position = np.arange(n) - np.repeat(np.cumsum(o.lines) - o.lines, o.lines)
    quantity = 1 + (position < o.extra_units[order]).astype(np.int64)
    # Broad buyers explore the whole catalogue; others mostly rebuy their favourites.
    explore = rng.random(n) < np.where(o.broad[order], 0.7, 0.1)
    favourite = favourites[o.customer[order], rng.integers(0, _N_FAVOURITES, n)]
    product = np.where(explore, rng.integers(0, _N_PRODUCTS, n), favourite)

    weight = quantity * cat.price[product]
    order_weight = np.bincount(order, weights=weight, minlength=len(o.ts))
    amount = np.round(o.amount[order] * weight / order_weight[order], 2)
    # Put the rounding remainder on each order's first line, so lines sum to the order amount.
    remainder = o.amount - np.bincount(order, weights=amount, minlength=len(o.ts))
    amount = np.where(position == 0, np.maximum(np.round(amount + remainder[order], 2), 0.0), amount)

    product_ids = _ids("p", np.arange(_N_PRODUCTS), 5)
    return pd.DataFrame(
        {
            "order_id": _take(order_ids, order),
            # The line number keeps two identical lines of one basket from being exact duplicates.
            "line": (position + 1).astype(np.int32),
            "product_id": _take(product_ids, product),
            "category": _labels(CATEGORIES, cat.category[product]),
            "quantity": quantity,
            "amount": amount,
        },
        copy=False,
    )


# --- events and suppressions -----------------------------------------------------------------


def _events_frame(rng, p: _Customers, o: _Orders, customer_ids, to_ts) -> pd.DataFrame:
    everyone = np.arange(len(p.signup), dtype=np.int32)
    horizon = np.full(len(everyone), p.horizon)
    kinds = []

    # Visits and logins follow the purchase rate (so they fall with it before churn).
    owner, ts = _poisson_times(
        rng,
        np.concatenate([everyone, everyone]),
        np.concatenate([p.signup, p.decay_start]),
        np.concatenate([p.decay_start, p.churn]),
        3.0 * np.concatenate([p.rate, p.rate * p.decay_factor]),
        daily=True,
    )
    kinds.append((owner, ts, np.where(rng.random(len(ts)) < 2 / 3, 0, 1)))

    # E-mails keep being opened after churn, less often.
    owner, ts = _poisson_times(
        rng,
        np.concatenate([everyone, everyone]),
        np.concatenate([p.signup, p.churn]),
        np.concatenate([p.churn, horizon]),
        np.concatenate([p.email_rate, 0.3 * p.email_rate]),
    )
    kinds.append((owner, ts, np.full(len(ts), 2)))

    # Everyday service contacts (more for service-hurt customers), then the burst before a
    # service churn.
    per_30_days = np.where(p.service_hurt, 3.0, 1.0) * 0.35 / 12
    owner, ts = _poisson_times(rng, everyone, p.signup, p.churn, per_30_days)
    kinds.append((owner, ts, np.where(rng.random(len(ts)) < 6 / 7, 3, 4)))
    burst = np.flatnonzero(p.reason == 1)
    start, end = p.service_burst[0][burst], p.service_burst[1][burst]
    count = 1 + rng.poisson(1.5, len(burst))
    owner = np.repeat(burst, count)
    ts = np.repeat(start, count) + (rng.random(len(owner)) * np.repeat(end - start, count)).astype(np.int64)
    kinds.append((owner, ts, np.where(rng.random(len(ts)) < 0.5, 3, 4)))

    # Each returned order comes with a return request within three days.
    returned = np.flatnonzero(o.status == 1)
    ts = np.minimum(o.ts[returned] + rng.integers(3600, 3 * _DAY, len(returned)), p.horizon - 1)
    kinds.append((o.customer[returned], ts, np.full(len(ts), 5)))

    owner = np.concatenate([k[0] for k in kinds])
    ts = np.concatenate([k[1] for k in kinds])
    kind = np.concatenate([k[2] for k in kinds]).astype(np.int8)
    order, _ = _sort_by_time(np.arange(len(ts)), ts)
    return pd.DataFrame(
        {
            "customer_id": _take(customer_ids, owner[order]),
            "event_ts": to_ts(ts[order]),
            "event_type": _labels(EVENT_TYPES, kind[order]),
        },
        copy=False,
    )


def _suppressions_frame(rng, p: _Customers, customer_ids, to_ts) -> pd.DataFrame:
    n = len(p.signup)
    chosen = np.sort(rng.choice(n, int(round(0.01 * n)), replace=False))
    reason = rng.choice(len(SUPPRESSION_REASONS), len(chosen), p=[0.5, 0.25, 0.1, 0.15])
    since = p.signup[chosen] + (rng.random(len(chosen)) * (p.horizon - p.signup[chosen])).astype(np.int64)
    return pd.DataFrame(
        {
            "customer_id": _take(customer_ids, chosen),
            "reason": _labels(SUPPRESSION_REASONS, reason),
            "since": to_ts(since // _DAY * _DAY),
        },
        copy=False,
    )


@dataclass(frozen=True)
class _Latent:
    """What the ground-truth responses need: the customers' latent state, the season, responsiveness."""

    people: _Customers
    customer_ids: pa.Array
    season: _Season
    responsiveness: np.ndarray  # (action, customer) lognormal multipliers of the uplift


def _responses_frame(latent: _Latent, horizon_days: int, list_date: pd.Timestamp) -> pd.DataFrame:
    """Ground truth for a win-back list sent at the end of `list_date`: P(buys within the horizon).

    Without action: a customer who has churned never comes back; one still buying comes back
    unless their churn hazard fires before their next order: r / (r + h) x (1 - exp(-(r + h) t)),
    r their purchase rate that day (lower in the weeks before churning, seasonal when the shop
    is). With action a: p_none + (1 - p_none) x uplift. The uplift depends on the customer, in
    ways their features show: large when the action meets their trait (service-hurt customers
    answer a callback, price-sensitive ones a discount, variety seekers a trial), small
    otherwise; larger for frequent buyers (x (rate / 1.5)^0.5, within 0.5-2); fading the longer
    a churner has been gone (e times smaller every 90 days); and a fixed lognormal
    responsiveness per customer and action.
    """
    p, season = latent.people, latent.season
    at = int((list_date.normalize() - season.start).days + 1) * _DAY  # end of the list day
    known = p.signup < at
    churned = p.churned & (p.churn <= at)
    rate = np.where(p.decay_start <= at, p.rate * p.decay_factor, p.rate) * season.mean_factor(at, horizon_days)
    window = horizon_days * _DAY / _RATE_UNIT  # the horizon in units of 30 days
    both = rate + p.hazard
    p_none = np.where(churned, 0.0, rate / both * (1 - np.exp(-both * window)))
    gone_days = np.where(churned, (at - p.churn) / _DAY, 0.0)
    fade = np.exp(-gone_days / _UPLIFT_FADE_DAYS)
    loyalty = np.clip(np.sqrt(p.rate / 1.5), 0.5, 2.0)
    columns = {"customer_id": _string_array(latent.customer_ids), "p_back_none": p_none}
    for k, (action, trait) in enumerate(RESPONSE_TRAITS.items()):
        base = np.where(getattr(p, trait), _UPLIFT_MATCHED, _UPLIFT_OTHER)
        uplift = np.minimum(base * latent.responsiveness[k] * loyalty * fade, 0.95)
        columns[f"p_back_{action}"] = p_none + (1 - p_none) * uplift
    frame = pd.DataFrame(columns, copy=False)
    return frame if known.all() else frame[known].reset_index(drop=True)


def _truth_frame(p: _Customers, customer_ids, to_ts) -> pd.DataFrame:
    churned = p.churned

    def when(times, mask):
        return to_ts(np.where(mask, times, -1), missing=~mask)

    cut_start, cut_end = p.discount_cut
    drop_start, drop_end = p.breadth_drop
    return pd.DataFrame(
        {
            "customer_id": _string_array(customer_ids),
            "signup_ts": to_ts(p.signup),
            "rate_30d": p.rate,
            "order_value": p.value,
            "price_sensitive": p.price_sensitive,
            "service_hurt": p.service_hurt,
            "variety_seeker": p.variety_seeker,
            "churn_hazard_30d": p.hazard,
            "churn_ts": when(p.churn, churned),
            "churn_reason": pd.array(
                np.where(churned, np.array(CHURN_REASONS, dtype=object)[np.maximum(p.reason, 0)], None),
                dtype="str",
            ),
            "decay_start_ts": when(p.decay_start, churned),
            "decay_factor": np.where(churned, p.decay_factor, np.nan),
            "discount_cut_start_ts": when(cut_start, cut_end > cut_start),
            "discount_cut_end_ts": when(cut_end, cut_end > cut_start),
            "breadth_drop_start_ts": when(drop_start, drop_end > drop_start),
            "breadth_drop_end_ts": when(drop_end, drop_end > drop_start),
        },
        copy=False,
    )


# --- columns ---------------------------------------------------------------------------------


class _Clock:
    """Turns int64 seconds since the start of the period into datetime64[ns] columns."""

    def __init__(self, start: pd.Timestamp):
        self.start_ns = start.as_unit("ns").value

    def __call__(self, seconds: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        ns = np.multiply(seconds, 1_000_000_000, dtype=np.int64)
        ns += self.start_ns
        if missing is not None:
            ns = np.where(missing, np.iinfo(np.int64).min, ns)  # the NaT sentinel
        return ns.view("datetime64[ns]")


def _string_array(values: pa.Array) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _labels(names, codes: np.ndarray):
    """A string column from small integer codes (index into `names`)."""
    return _string_array(pa.array(names, pa.large_string()).take(pa.array(codes)))


def _take(strings: pa.Array, index: np.ndarray):
    """A string column of `strings[index]` (pyarrow gathers without making Python strings)."""
    return _string_array(strings.take(pa.array(index)))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Ids such as c000123: `prefix` + zero-padded number, built digit by digit in NumPy."""
    n, size = len(numbers), len(prefix) + width
    chars = np.empty((n, size), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    for first in range(0, n, _BLOCK):
        rest = np.asarray(numbers[first : first + _BLOCK], dtype=np.uint64)
        digits = np.empty((width, len(rest)), dtype=np.uint8)  # one row per digit: contiguous writes
        for i in range(width - 1, -1, -1):
            quotient = rest // 10
            digits[i] = rest - quotient * 10 + ord("0")
            rest = quotient
        chars[first : first + _BLOCK, len(prefix) :] = digits.T
    offsets = np.arange(0, (n + 1) * size, size, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
