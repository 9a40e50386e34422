"""The configuration's cron check agrees with the parser Prefect schedules use (so `churn serve` never fails on one).

Imports Prefect (its vendored croniter), hence apart from tests/test_config.py.
"""

from __future__ import annotations

import pytest
from prefect._internal.schemas.validators import validate_cron_string

from churn.config import _check_cron
from churn.errors import ConfigError

CRONS = ["0 6 * * *", "*/15 * * * *", "0 3 1 * *", "0 7 * * mon-fri", "30 5 1,15 jan-jun *", "0 0 L * *",
         "0 9 * * fri#2", "0 22-2 * * *", "0 6 * * 7", "@daily", "0-30/10 8-18/2 * * *", "0 6 ? * *",
         "0 25 * * *", "0 3 1 *", "0 7 * * monday", "*/0 6 * * *", "60 * * * *", "0 0 0 * *", "0 0 * 13 *",
         "0 0 * * 8", "a b c d e", "0 6 32 * *", "1-2-3 * * * *", "0 6 * * fri#6", "0 22 * * 5L", ""]


def _prefect_takes(cron: str) -> bool:
    try:
        validate_cron_string(cron)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("cron", CRONS)
def test_a_cron_string_is_accepted_exactly_when_prefect_takes_it(cron):
    try:
        _check_cron("schedule.daily_cron", cron)
        ours = True
    except ConfigError:
        ours = False
    assert ours == _prefect_takes(cron)
