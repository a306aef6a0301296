"""Inputs larger than memory on a cluster: read by partition on the workers, written by partition.

Why this is ours and what Dask does: `dask.dataframe` cuts the file (a parquet file by row
groups, a CSV file into byte blocks of `BLOCK_BYTES` cut at line ends) and reads each piece on a
worker; the client reads only the parquet footer or the CSV's first block (the column names).
What runs on a piece is the existing engine (cluster_task.py), `CHUNK_ROWS` rows at a time, and
each chunk's rows (inputs, outputs and the run columns of an export) are written by the worker
as one parquet file in the output folder: `OUTPUT.parquet/part-00003-0001.parquet`, which
pandas and pyarrow read back as one table in input order (the parts' names sort that way).

So nothing of the table passes through the client, and the output folder is the journal: a
chunk's file appears whole or not at all (written aside, then renamed), a worker that dies loses
only the chunk it was running (the retried task skips the chunks already written), and
`--resume` sends only the pieces and chunks without a file.

Unlike a run of a table the client opened, a CSV read here keeps every cell as text (the reading
of each block decides no type on its own), and the rows' results are not in the journal's rows
table (a 5-million-row run would make the journal as big as the input): the window does not
show them; the output folder holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events as ev
from .cluster import ClusterEngine, ClusterError, require_distributed
from .cluster_task import RunSpec

# Inputs at least this big are read on the workers under --cluster (BATCHGRID_CLUSTER_SPLIT_BYTES).
SPLIT_BYTES = int(os.environ.get("BATCHGRID_CLUSTER_SPLIT_BYTES") or 256 * 2**20)
BLOCK_BYTES = 64 * 2**20  # a CSV piece: a few hundred thousand rows, read by one worker
CHUNK_ROWS = 2000         # rows run (and written) together within a piece: what a dead worker loses
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}


def reads_on_workers(path: Path, threshold: int | None = None) -> bool:
    """A parquet or CSV input big enough to be read by partition on the workers."""
    path = Path(path)
    limit = SPLIT_BYTES if threshold is None else threshold
    return path.suffix.lower() in FORMATS and path.is_file() and path.stat().st_size >= limit


def pieces(path: Path) -> tuple[list[str], list[Any], int | None]:
    """(columns, one dask Delayed pandas frame per piece in input order, rows if known) for
    `path`; the client reads only the footer (parquet) or the first block's head (CSV)."""
    require_distributed()
    import dask.dataframe as dd

    kind = FORMATS[path.suffix.lower()]
    rows: int | None = None
    if kind == "parquet":
        import pyarrow.parquet as pq

        frame = dd.read_parquet(str(path), split_row_groups=True)
        rows = pq.ParquetFile(path).metadata.num_rows
    else:
        frame = dd.read_csv(str(path), blocksize=BLOCK_BYTES, dtype=str, keep_default_na=False,
                            sep="\t" if kind == "tsv" else ",")
    return [str(c) for c in frame.columns], list(frame.to_delayed()), rows


@dataclass
class PieceOutcome:
    number: int
    done: int = 0
    failed: int = 0
    chunks: int = 0            # chunks written by this task (chunks found written are not counted)
    paused: str = ""           # why a chunk's engine paused itself: the run stops, the rest is for --resume
    kind: str = ""
    totals: dict[str, float] | None = None


def part_name(piece: int, chunk: int) -> str:
    return f"part-{piece:05d}-{chunk:04d}.parquet"


def run_piece(spec: RunSpec, frame: Any, number: int, folder: str, header: list[str], workers: int,
              written: tuple[str, ...] = ()) -> PieceOutcome:
    """The task: on a worker, one piece of the input through the engine, chunk by chunk, each
    chunk written to its own part file. `written`: input columns a step writes over (in place)."""
    from batchgrid.core.table.write_flat import write_parquet
    from batchgrid.core.util import secrets
    from distributed import get_worker

    from .cluster_task import TOTALS, Partition, leased, run_on_worker
    from .results import RUN_COLUMNS

    worker = get_worker()
    out = PieceOutcome(number, totals=dict.fromkeys(TOTALS, 0.0))
    columns = [str(c) for c in frame.columns]
    outputs = header[len(columns):len(header) - len(RUN_COLUMNS)]
    frame = frame.astype(object).where(frame.notna(), None)
    with leased(spec, worker) as semaphore:
        for chunk, start in enumerate(range(0, len(frame), CHUNK_ROWS)):
            target = Path(folder) / part_name(number, chunk)
            if target.exists():  # written before this task was retried, or by a run this one resumes
                continue
            rows = frame.iloc[start:start + CHUNK_ROWS]
            values = [rows[c].tolist() for c in columns]
            part = Partition(number, list(range(len(rows))), columns, values, workers)
            outcome = run_on_worker(spec, part, semaphore, worker)
            if outcome.paused or outcome.reason == "failed":
                out.paused, out.kind = outcome.paused or outcome.message, outcome.kind
                break
            results = {r.index: r for r in outcome.results}
            lines = []
            for k in range(len(rows)):
                result = results[k]
                out.done += result.status == ev.DONE
                out.failed += result.status == ev.ERROR
                inputs = [result.outputs[c] if c in written and c in result.outputs else v[k]
                          for c, v in zip(columns, values, strict=True)]
                lines.append([*inputs, *(result.outputs.get(c) for c in outputs),
                              *(read(result) for _, read in RUN_COLUMNS)])
            write_parquet(header, secrets.redact_rows(lines), target, len(lines))
            out.chunks += 1
            for name in TOTALS:
                out.totals[name] += outcome.totals.get(name, 0)  # type: ignore[index]
    return out


class FileEngine(ClusterEngine):
    """A ClusterEngine whose rows are a file's pieces, read and written by the workers: its own
    table is empty (the input's columns, no row); progress counts the pieces' rows as they end."""

    source: Path
    folder: Path
    resume_parts: bool
    pieces_run: int
    rows_written: int

    async def _drive(self) -> None:
        distributed = require_distributed()
        from dask import delayed

        from .cluster_task import TOTALS
        from .results import RUN_COLUMN_NAMES, split_outputs

        client = self.client
        columns, frames, rows = await asyncio.to_thread(pieces, self.source)
        if columns != list(self.rows.columns):
            raise ClusterError(f"{self.source.name}: its columns changed while the run started")
        if rows is not None:
            self.progress.selected = self.progress.total = rows
        new, written = split_outputs(columns, self._output_columns)
        taken = set(columns) | set(new)
        header = [*columns, *new, *(f"run {n}" if n in taken else n for n in RUN_COLUMN_NAMES)]
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.resume_parts:  # a new run: the parts of an earlier one are not this run's
            for old in self.folder.glob("part-*.parquet"):
                old.unlink()
        workers = len(await client.nthreads()) or 1
        name = f"batchgrid-{uuid.uuid4().hex[:12]}"
        async with self._semaphore(name):
            spec = self._spec(name)
            tasks = [delayed(run_piece, pure=False)(spec, frame, number, str(self.folder), header, workers,
                                                      tuple(written), dask_key_name=f"{name}-piece-{number}")
                     for number, frame in enumerate(frames)]
            futures = client.compute(tasks, retries=2)
            try:
                async for future in distributed.as_completed(futures, loop=client.loop):
                    try:
                        out = await future
                    except Exception as exc:
                        text = " ".join(str(exc).split()) or type(exc).__name__
                        raise ClusterError(f"the cluster could not run a piece of {self.source.name}: "
                                           f"{type(exc).__name__}: {text}") from None
                    self.pieces_run += 1
                    p = self.progress
                    p.done += out.done
                    p.failed += out.failed
                    for key in TOTALS:
                        setattr(p, key, getattr(p, key) + type(getattr(p, key))((out.totals or {}).get(key, 0)))
                    self.rows_written += out.done + out.failed
                    self.publish(PieceDone(out.number, out.done, out.failed))
                    if out.paused:
                        raise ClusterError(f"paused: {out.paused}; the parts written are kept: run again with "
                                           "--resume to run the rest")
            finally:
                with contextlib.suppress(Exception):
                    await client.cancel(futures, force=True)


@dataclass
class PieceDone:
    """A piece of the input is written (its rows done or failed): for a progress line."""

    number: int
    done: int
    failed: int


def file_engine(engine: Any, client: Any, pipeline: dict[str, Any], source: Path, folder: Path, *,
                cluster: Any = None, resume: bool = False) -> FileEngine:
    """The engine a Job made on the input's columns (no row), run over the file's pieces."""
    from .cluster import cluster_engine

    made = cluster_engine(engine, client, pipeline, cluster=cluster)
    made.__class__ = FileEngine
    assert isinstance(made, FileEngine)
    made.source, made.folder, made.resume_parts = Path(source), Path(folder), resume
    made.pieces_run = made.rows_written = 0
    return made
