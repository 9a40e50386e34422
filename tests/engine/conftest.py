"""One small Dask cluster for the engine tests: 2 worker processes, 1 thread each (started once, ~10 s).

Worker processes, not threads: the tests then see what a real cluster does (every argument and
result pickled, each worker importing the library on its own, never Prefect).
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def dask_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def engine(dask_client, tmp_path_factory):
    """A Dask engine of 4 partitions on the session's cluster; its partitions are reused across tests."""
    from churn.config import EngineConfig
    from churn.engine.dask import DaskEngine

    storage = str(tmp_path_factory.mktemp("partitions"))
    return DaskEngine(dask_client, EngineConfig(kind="dask", partitions=4), storage).warm()
