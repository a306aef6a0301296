"""`batchgrid-cli run ... --cluster ADDRESS`: the session's run, its rows on a Dask cluster.

What `Session.start` does (the job's engine, the store, the listeners, the run as a task), with the
engine turned into a `ClusterEngine` (core/run/cluster.py) before it starts. The engine closes the
cluster connection (and a `local[:N]` cluster it started) when the run ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchgrid.core.run import cluster as dask_run


async def start_on_cluster(session: Any, mode: str, address: str, *, max_concurrency: int | None,
                           partition_rows: int | None = None) -> Any:
    """Start the session's run on the cluster at `address` (or `local[:N]`); returns its engine."""
    dask_run.require_distributed()  # said before anything is opened
    job = await session._current_job()
    client, cluster = await dask_run.connect(address)
    try:
        engine = await asyncio.to_thread(job.start, mode, max_concurrency=max_concurrency)
        engine = dask_run.cluster_engine(engine, client, job.run_pipeline.to_dict(), cluster=cluster,
                                          partition_rows=partition_rows)
    except BaseException:
        await dask_run.disconnect(client, cluster)
        raise
    session.engine = engine
    session.store.reset(job.rows, session.output_columns(), job.results)
    session.store.run_starting(job.results, engine.selection)
    engine.subscribe(session.store.on_event)
    for listener in session.listeners:
        engine.subscribe(listener)
    session._run_task = asyncio.ensure_future(engine.run())
    return engine
