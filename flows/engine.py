"""The Dask engine in a flow run: a `DaskTaskRunner` owns the cluster; the pipeline uses its client.

With `[engine] kind = "dask"`, a flow runs with `prefect_dask.DaskTaskRunner` (connected to
`[engine] scheduler`, or starting a LocalCluster sized like the CLI's). The flow's steps stay
Prefect tasks in the flow's process (retries and observability as before) and hand the
per-partition work to the runner's Dask client as plain library functions: the workers never
run a Prefect task, so they never import Prefect and never start a temporary Prefect server of
their own (about 13 s per worker when no PREFECT_API_URL is set).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext

from churn.config import Config, EngineConfig
from churn.engine import open_engine


def task_runner(engine: EngineConfig) -> Any:
    """The `DaskTaskRunner` for the engine settings: the scheduler at `engine.scheduler`, else a LocalCluster."""
    from prefect_dask import DaskTaskRunner

    if engine.scheduler:
        return DaskTaskRunner(address=engine.scheduler)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": engine.workers or os.cpu_count() or 1, "threads_per_worker": engine.threads_per_worker,
        "processes": True, "memory_limit": engine.memory_per_worker, "dashboard_address": None,
        "silence_logs": logging.WARNING})


def with_engine(flow: Any, config: Config) -> Any:
    """`flow` with a DaskTaskRunner when the engine is "dask" (as it is otherwise)."""
    return flow.with_options(task_runner=task_runner(config.engine)) if config.engine.kind == "dask" else flow


@contextmanager
def flow_engine(config: Config, out_dir: str | Path) -> Iterator[Any]:
    """Inside a flow run: the pipeline's engine (None for "local"), on the flow's DaskTaskRunner's client.

    A flow started without one (a subflow of the daily or backfill deployment) opens its own.
    """
    if config.engine.kind != "dask":
        yield None
        return
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None)
    if isinstance(runner, DaskTaskRunner):
        with open_engine(config.engine, out_dir, runner.client) as engine:
            yield engine
        return
    with task_runner(config.engine) as runner, open_engine(config.engine, out_dir, runner.client) as engine:
        yield engine
