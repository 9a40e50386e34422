"""The Dask engine of the engine tests, on the session's 2-worker cluster (`dask_client`, tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engine(dask_client, tmp_path_factory):
    """A Dask engine of 4 partitions on the session's cluster; its partitions are reused across tests."""
    from churn.config import EngineConfig
    from churn.engine.dask import DaskEngine

    storage = str(tmp_path_factory.mktemp("partitions"))
    return DaskEngine(dask_client, EngineConfig(kind="dask", partitions=4), storage).warm()
