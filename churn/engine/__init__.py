"""The engine switch: where the per-customer work of a run happens.

`[engine] kind = "local"` (the default) runs everything in this process: DuckDB and the feature
kernels over the whole data set, XGBoost on one machine. `kind = "dask"` splits the customers
into partitions by a stable hash of their id and runs the same per-customer code on each
partition on a Dask cluster (`churn.engine.dask`); the results are the same (DESIGN.md section 8,
docs/scale.md).

    with open_engine(config.engine, out_dir) as engine:   # None for the local engine
        pipeline.score_day(..., engine=engine)

Only `dask.distributed` is used here: nothing under `churn/` imports Prefect, so a worker never
loads it (a flow passes its `DaskTaskRunner`'s client instead, see flows/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.config import EngineConfig

if TYPE_CHECKING:
    from churn.engine.dask import DaskEngine

__all__ = ["open_engine", "default_storage"]

PARTITIONS_DIR = Path(".cache") / "partitions"  # under the output root


def default_storage(out_dir: str | Path) -> str:
    """Where partitions go when `[engine] storage` is empty: OUT/.cache/partitions."""
    return str(Path(out_dir).resolve() / PARTITIONS_DIR)


@contextmanager
def open_engine(config: EngineConfig, out_dir: str | Path = "out", client: Any = None,
                data_dir: str | Path | None = None) -> Iterator[DaskEngine | None]:
    """The engine the settings ask for: None for "local"; for "dask", a `DaskEngine` on a cluster.

    The cluster is `client`'s when given (a flow's DaskTaskRunner), else the scheduler at
    `config.scheduler`, else a LocalCluster started here and stopped on exit. With `data_dir`,
    a missing data directory or orders file is reported before any cluster starts.
    """
    if config.kind == "local":
        yield None
        return
    from churn.data.partitions import table_urls

    if data_dir is not None:
        table_urls(str(data_dir), {})
    from churn.engine.dask import DaskEngine

    with DaskEngine.open(config, config.storage or default_storage(out_dir), client) as engine:
        yield engine
