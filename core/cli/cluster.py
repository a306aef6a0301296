"""`batchgrid-cli run ... --cluster ADDRESS` for an input too big for the client.

A run whose input is read here is the session's (`Session.start(mode, cluster=ADDRESS)`, as the
window's Run on a Dask cluster). `run_file_on_cluster`: an input too big for the client
(core/run/cluster_files.py) is read, run and written by partition on the workers.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from batchgrid.core.run import cluster as dask_run
from batchgrid.core.run.cluster_files import reads_on_workers
from batchgrid.core.util.errors import BatchgridError

__all__ = ["reads_on_workers", "run_file_on_cluster", "start_on_cluster"]


async def start_on_cluster(session: Any, mode: str, address: str, *, max_concurrency: int | None,
                           partition_rows: int | None = None) -> Any:
    """`session.start(mode, cluster=address)`, where the cluster start lives (kept for its callers)."""
    return await session.start(mode, max_concurrency=max_concurrency, cluster=address, partition_rows=partition_rows)


async def run_file_on_cluster(args: Any, pipeline: Any, input_path: Path, output: Path) -> int:
    """`run PIPELINE BIG.parquet --cluster ... -o OUT.parquet` for an input read by partition on the
    workers (cluster_files.reads_on_workers): the client reads only its column names; the workers
    read, run and write `OUT.parquet/part-*.parquet`. Returns the exit code (1: some rows failed)."""
    from batchgrid.core.run.cluster_files import file_engine, pieces
    from batchgrid.core.run.job import ALL, Job
    from batchgrid.core.table.columnar import Table

    dask_run.require_distributed()
    dask_run.refuse_batch_mode(pipeline.steps)
    size = f"{input_path.stat().st_size / 2**20:,.0f} MB"
    if output.suffix.lower() != ".parquet":
        raise BatchgridError(f"{input_path.name} ({size}) is read by partition on the workers, and its results are "
                             f"written by partition: give an output ending in .parquet (a folder of parquet parts)")
    if getattr(args, "retry_failed", False) or getattr(args, "limit", None) or getattr(args, "sheet", None):
        raise BatchgridError(f"{input_path.name} ({size}) is read by partition on the workers: --retry-failed, "
                             "--limit and --sheet apply to inputs read here (run it without them)")
    if output.exists() and not output.is_dir():
        raise BatchgridError(f"{output}: a file is there; the results of an input read on the workers are a folder")
    columns, _, _ = await asyncio.to_thread(pieces, input_path)  # the footer or the first block's head only
    job = Job(pipeline, Table(columns, [[] for _ in columns]), input_path=input_path, trusted=args.trust,
              use_cache=not args.no_cache)
    engine = await asyncio.to_thread(job.start, ALL, max_concurrency=args.max_concurrency)
    client, cluster = await dask_run.connect(args.cluster)
    assert job.run_pipeline is not None
    engine = file_engine(engine, client, job.run_pipeline.to_dict(), input_path, output, cluster=cluster,
                         resume=bool(args.resume))
    progress = await engine.run()
    reason, message = engine.outcome or ("finished", "")
    if reason == "failed":
        raise BatchgridError(message)
    line = (f"{progress.done} done, {progress.failed} failed of {progress.selected or engine.rows_written} rows "
            f"({engine.rows_written} in this run) in {progress.elapsed:.1f} s -> {output}")
    print(line, file=sys.stderr)
    return 1 if progress.failed or reason != "finished" else 0
