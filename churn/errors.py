"""Errors a user can hit: each message says what is wrong and what to do."""


class ChurnError(Exception):
    """Base class of the errors a user can fix; the CLI prints them without a traceback."""


class ConfigError(ChurnError):
    """The configuration file is missing, malformed or has a bad value."""


class ContractError(ChurnError):
    """A data directory breaks the data contract (file, column, rule, offending rows)."""


class DataError(ChurnError):
    """The data cannot support the requested operation (e.g. too little history for a split)."""


class ModelNotFoundError(ChurnError):
    """No trained model where one was expected."""


class QualityError(DataError):
    """The data-quality gate failed (freshness, volume or schema): nothing was published."""


class NothingToMeasure(DataError):
    """No win-back list has reached the end of its horizon window yet: nothing to measure, not a fault."""
