"""Runs on a Dask cluster (core/run/cluster.py): a real LocalCluster of worker processes, the real
test server over HTTP, real files. One cluster (3 workers) for the module: it starts in a few seconds."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from batchgrid.core.cli.main import main  # noqa: E402
from batchgrid.core.run import cluster as dask_run  # noqa: E402
from models_support import KEY, KEY_ENV  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"
REPO = Path(__file__).resolve().parents[1]
WORKERS = 3


@pytest.fixture(scope="module")
def server():
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as s:
        yield s


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 3 worker processes (the scheduler in this process); they inherit the test key from this process's
    environment (as a real worker has its own), never from a task."""
    import dask

    os.environ[KEY_ENV] = KEY
    # A dead worker's leases come back after 3 s here (the runs' 6 s, Dask's 30 s): the killed-worker test waits less.
    config = dask.config.set({"distributed.scheduler.locks.lease-validation-interval": "0.5s"})
    timeout, dask_run.LEASE_TIMEOUT = dask_run.LEASE_TIMEOUT, 3.0
    cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
        config.__exit__(None, None, None)
        dask_run.LEASE_TIMEOUT = timeout
        os.environ.pop(KEY_ENV, None)


@pytest.fixture
def fresh(server):
    server.reset()
    server.configure(api_key=KEY)
    return server


def llm_pipeline(path: Path, server, max_concurrency: int) -> Path:
    path.write_text(json.dumps({
        "version": 1, "settings": {"max_concurrency": max_concurrency, "retry_base_delay": 0.05},
        "providers": {"test": {"preset": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV,
                               "model": "gpt-4o-mini"}},
        "steps": [{"type": "llm", "prompt": "{text}", "output": "answer"}],
    }))
    return path


def sheet(path: Path, texts: list[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def journal_rows(journal: Path) -> list[int]:
    with sqlite3.connect(journal) as db:
        return [n for (n,) in db.execute("SELECT row_number FROM rows ORDER BY row_number")]


def test_bundled_example_equals_the_local_run_cell_for_cell(scheduler, tmp_path, monkeypatch, capsys):
    for name in ("reviews-offline.batchgrid.json", "reviews.xlsx", "products.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    monkeypatch.setattr(dask_run, "PARTITION_ROWS", 50)  # the 240 rows over every worker
    pipeline, sheet_path = str(tmp_path / "reviews-offline.batchgrid.json"), str(tmp_path / "reviews.xlsx")
    args = ["run", pipeline, sheet_path, "--quiet", "--journal"]
    assert main([*args, str(tmp_path / "j1.sqlite"), "-o", str(tmp_path / "local.csv")]) == 1  # 3 rows fail
    assert main([*args, str(tmp_path / "j2.sqlite"), "-o", str(tmp_path / "cluster.csv"),
                 "--cluster", scheduler]) == 1
    local, remote = read(tmp_path / "local.csv"), read(tmp_path / "cluster.csv")
    assert len(local) == len(remote) == 240
    assert list(local[0]) == list(remote[0])
    for a, b in zip(local, remote, strict=True):
        a.pop("latency (s)"), b.pop("latency (s)")  # the only cell that may differ
        assert a == b
    assert sum(r["status"] == "error" for r in remote) == 3
    assert journal_rows(tmp_path / "j2.sqlite") == list(range(240))


async def _start(tmp_path, server, scheduler, n: int, max_concurrency: int, partition_rows: int,
                 texts: list[str] | None = None):
    from batchgrid.core.cli.cluster import start_on_cluster
    from batchgrid.core.session import Session

    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data", use_cache=False)
    await session.load_pipeline(llm_pipeline(tmp_path / "p.json", server, max_concurrency))
    await session.open_sheet(sheet(tmp_path / "in.csv", texts or [f"row {i}" for i in range(n)]))
    engine = await start_on_cluster(session, "all", scheduler, max_concurrency=None, partition_rows=partition_rows)
    return session, engine


def test_max_concurrency_is_one_cap_for_the_whole_cluster(scheduler, fresh, tmp_path):
    fresh.configure(latency=0.05)

    async def go():
        session, engine = await _start(tmp_path, fresh, scheduler, 360, 6, 40)
        reason, _ = await session.wait()
        await session.close()
        return session, engine, reason

    session, engine, reason = asyncio.run(go())
    assert reason == "finished"
    answers = [r.outputs["answer"] for r in session.store.results]
    assert answers == [f"echo: row {i}" for i in range(360)]
    assert fresh.stats.peak_in_flight <= 6        # 3 workers x 6 would be 18
    assert fresh.stats.peak_in_flight >= 4        # and the cap was used, not one call at a time
    assert engine.partitions_run == 9


def test_a_worker_killed_mid_run_loses_only_its_partition(scheduler, fresh, tmp_path):
    fresh.configure(latency=0.02, latency_by_prompt={"row 130": 3.0})  # in the 4th partition of 40 rows

    async def go():
        session, engine = await _start(tmp_path, fresh, scheduler, 240, 4, 40)
        assert await fresh.wait_for(lambda s: s.per_prompt["row 130"] >= 1, timeout=60)
        processing = await engine.client.processing()
        where = [w for w, keys in processing.items() if any(str(k).endswith("-part-3") for k in keys)]
        assert len(where) == 1
        pids = await engine.client.run(os.getpid, workers=where)
        os.kill(pids[where[0]], signal.SIGKILL)
        reason, message = await session.wait()
        await session.close()
        return session, reason, message

    session, reason, message = asyncio.run(go())
    assert (reason, message) == ("finished", "")
    results = session.store.results
    assert [r.index for r in results] == list(range(240))
    assert [r.outputs["answer"] for r in results] == [f"echo: row {i}" for i in range(240)]
    assert fresh.stats.per_prompt["row 130"] == 2   # the task ran again on another worker
    assert max(fresh.stats.per_prompt[f"row {i}"] for i in range(240) if not 120 <= i < 160) == 1
    assert journal_rows(tmp_path / "journal.sqlite") == list(range(240))  # every row exactly once


def test_resume_after_the_client_was_killed_sends_only_unfinished_rows(scheduler, fresh, tmp_path):
    fresh.configure(latency_by_prompt={"slow": 10.0})  # the last partition (rows 80-99) never finishes
    texts = [f"row {i}" for i in range(99)] + ["slow row 99"]
    pipeline, data = llm_pipeline(tmp_path / "p.json", fresh, 20), sheet(tmp_path / "in.csv", texts)
    journal, out = tmp_path / "journal.sqlite", tmp_path / "out.csv"
    command = [sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data), "-o", str(out),
               "--journal", str(journal), "--no-cache", "--quiet", "--cluster", scheduler]
    env = {**os.environ, "BATCHGRID_PARTITION_ROWS": "20"}
    client = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        assert asyncio.run(fresh.wait_for(lambda s: sum(s.answered[f"row {i}"] for i in range(99)) == 99
                                          and s.per_prompt["slow row 99"] == 1, timeout=60))

        async def journalled() -> bool:
            for _ in range(600):
                if journal.exists() and len(journal_rows(journal)) >= 80:
                    return True
                await asyncio.sleep(0.05)
            return False

        assert asyncio.run(journalled())
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    assert not out.exists()
    assert journal_rows(journal) == list(range(80))  # what the killed client had
    fresh.reset()
    fresh.configure(api_key=KEY)
    assert subprocess.run([*command, "--resume"], env=env, cwd=REPO).returncode == 0
    assert sorted(fresh.stats.per_prompt) == sorted(texts[80:])  # the partition that had not come back
    rows = read(out)
    assert [r["answer"] for r in rows] == [f"echo: {t}" for t in texts]
    assert journal_rows(journal) == list(range(100))


def test_a_task_carries_the_names_of_keys_never_the_keys(scheduler, fresh, tmp_path):
    from distributed.protocol import pickle as dask_pickle

    sent: list[bytes] = []

    async def go():
        session, engine = await _start(tmp_path, fresh, scheduler, 60, 4, 20)
        submit = engine.client.submit

        def recording(fn, *args, **kwargs):
            sent.append(dask_pickle.dumps((fn, args)))
            return submit(fn, *args, **kwargs)

        engine.client.submit = recording  # before the run's first turn: every task goes through it
        reason, _ = await session.wait()
        await session.close()
        return session, reason

    _session, reason = asyncio.run(go())
    assert reason == "finished"
    assert len(sent) == 3
    assert all(KEY.encode() not in payload and KEY_ENV.encode() in payload for payload in sent)
    assert fresh.stats.authorizations == {f"Bearer {KEY}"}  # the workers' own key reached the server


def test_without_dask_it_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "text", "output": "t"}]}))
    code = main(["run", str(pipeline), str(sheet(tmp_path / "in.csv", ["a"])), "--quiet",
                 "--journal", str(tmp_path / "j.sqlite"), "--cluster", "local:2"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"batchgrid: error: {dask_run.INSTALL}"


def test_no_scheduler_at_the_address_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "text", "output": "t"}]}))
    code = main(["run", str(pipeline), str(sheet(tmp_path / "in.csv", ["a"])), "--quiet",
                 "--journal", str(tmp_path / "j.sqlite"), "--cluster", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"batchgrid: error: no Dask scheduler answers at tcp://127.0.0.1:{port}: ")
    assert "\n" not in err


def test_a_big_parquet_is_read_run_and_written_by_partition_on_the_workers(scheduler, tmp_path, monkeypatch):
    """200,000 rows in row groups of 25,000: the client reads the footer only (its table readers are
    never called), the workers write OUT.parquet/part-*.parquet in input order; a resume after parts
    were lost runs only their rows."""
    from types import SimpleNamespace

    import pandas as pd
    import pyarrow.parquet as pq
    from batchgrid.core.cli import cluster as cli_cluster
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.run import cluster_files
    from batchgrid.core.session import Session
    from batchgrid.core.table import read as table_read

    n = 200_000
    data = tmp_path / "big.parquet"
    pd.DataFrame({"id": range(n), "text": [f"t{i % 97}" for i in range(n)]}).to_parquet(data, row_group_size=25_000)
    pipeline_path = tmp_path / "p.json"
    pipeline_path.write_text(json.dumps({"version": 1, "steps": [
        {"type": "python", "code": "id * 2 if id % 1000 else 1 / 0", "output": "double"}]}))
    assert cluster_files.reads_on_workers(data, threshold=1) and not cluster_files.reads_on_workers(data)
    reads: list[object] = []

    def refused(*args, **kwargs):
        reads.append(args)
        raise AssertionError("the client read the table")

    monkeypatch.setattr(table_read, "read_table", refused)
    monkeypatch.setattr(Session, "open_sheet", refused)
    out = tmp_path / "out.parquet"

    def run(resume: bool) -> int:
        args = SimpleNamespace(cluster=scheduler, trust=True, no_cache=True, max_concurrency=None, resume=resume,
                               retry_failed=False, limit=None, sheet=None)
        return asyncio.run(cli_cluster.run_file_on_cluster(args, Pipeline.load(pipeline_path), data, out))

    assert run(False) == 1  # one row in 1,000 fails
    assert reads == []
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 8 * -(-25_000 // cluster_files.CHUNK_ROWS)  # 8 row groups, each cut in chunks
    result = pq.read_table(out).to_pydict()  # the folder, read as one table
    assert result["id"] == list(range(n))
    assert result["double"] == [None if i % 1000 == 0 else i * 2 for i in range(n)]
    assert result["status"].count("error") == n // 1000
    assert "ZeroDivisionError" in result["error"][0]
    for lost in parts[3:5]:
        lost.unlink()
    engines = []
    plain = cluster_files.file_engine
    monkeypatch.setattr(cluster_files, "file_engine", lambda *a, **k: engines.append(plain(*a, **k)) or engines[-1])
    assert run(True) == 1
    assert engines[0].rows_written == 2 * cluster_files.CHUNK_ROWS  # only the lost parts ran again
    again = pq.read_table(out).to_pydict()
    again.pop("latency (s)"), result.pop("latency (s)")
    assert again == result


def test_a_big_csv_is_read_in_blocks_on_the_workers(scheduler, tmp_path, monkeypatch):
    """A CSV cut into byte blocks (at line ends) that the workers read: every row once, in input order, as text."""
    from types import SimpleNamespace

    import pyarrow.parquet as pq
    from batchgrid.core.cli import cluster as cli_cluster
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.run import cluster_files
    from batchgrid.core.table import read as table_read

    monkeypatch.setattr(cluster_files, "BLOCK_BYTES", 50_000)
    monkeypatch.setattr(table_read, "read_table", None)  # the client never reads the table
    n = 20_000
    data = sheet(tmp_path / "big.csv", [f"row, {i}" for i in range(n)])  # quoted commas
    pipeline_path = tmp_path / "p.json"
    pipeline_path.write_text(json.dumps({"version": 1, "steps": [
        {"type": "python", "code": "text.upper()", "output": "upper"}]}))
    args = SimpleNamespace(cluster=scheduler, trust=True, no_cache=True, max_concurrency=None, resume=False,
                           retry_failed=False, limit=None, sheet=None)
    out = tmp_path / "out.parquet"
    assert asyncio.run(cli_cluster.run_file_on_cluster(args, Pipeline.load(pipeline_path), data, out)) == 0
    result = pq.read_table(out).to_pydict()
    assert result["text"] == [f"row, {i}" for i in range(n)]
    assert result["upper"] == [f"ROW, {i}" for i in range(n)]
    assert len({p.name.split("-")[1] for p in out.glob("part-*.parquet")}) == 5  # ~250 KB in blocks of 50 KB


def test_the_command_line_reads_a_big_input_on_the_workers(scheduler, tmp_path, monkeypatch):
    """`run ... --cluster` with an input over the split size goes the by-partition way; an .xlsx output is refused in words."""
    import pyarrow.parquet as pq
    from batchgrid.core.run import cluster_files
    from batchgrid.core.table import read as table_read

    monkeypatch.setattr(cluster_files, "SPLIT_BYTES", 1)
    monkeypatch.setattr(table_read, "read_table", None)  # the client never reads the table
    data = sheet(tmp_path / "big.csv", [f"r{i}" for i in range(300)])
    pipeline_path = tmp_path / "p.json"
    pipeline_path.write_text(json.dumps({"version": 1, "steps": [
        {"type": "python", "code": "text.upper()", "output": "upper"}]}))
    out = tmp_path / "out.parquet"
    common = ["run", str(pipeline_path), str(data), "--cluster", scheduler, "--trust", "--no-cache",
              "--journal", str(tmp_path / "j.sqlite")]
    assert main([*common, "-o", str(out)]) == 0
    assert pq.read_table(out).to_pydict()["upper"] == [f"R{i}" for i in range(300)]
    assert main([*common, "-o", str(tmp_path / "out.xlsx")]) == 2  # said in one line: give a .parquet name


# ---- Session.start(cluster=...): the one start of the command line's and the window's runs on a cluster ----
@pytest.mark.parametrize("text, where", [
    ("local", (True, None, "")), ("local:3", (True, 3, "")), (" scheduler:8786 ", (False, None, "tcp://scheduler:8786")),
    ("TLS://10.0.0.5:8786", (False, None, "tls://10.0.0.5:8786")), ("[::1]:8786", (False, None, "tcp://[::1]:8786"))])
def test_an_address_is_read_in_core(text, where):
    assert dask_run.parse_address(text) == where
    assert dask_run.address_problem(text) == ""


def test_a_local_cluster_of_no_workers_is_said_as_before(tmp_path, capsys):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "text", "output": "t"}]}))
    code = main(["run", str(pipeline), str(sheet(tmp_path / "in.csv", ["a"])), "--quiet",
                 "--journal", str(tmp_path / "j.sqlite"), "--cluster", "local:0"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "batchgrid: error: --cluster local:N needs at least 1 worker"


def test_session_start_without_dask_says_so_before_opening_anything(tmp_path, monkeypatch):
    from batchgrid.core.session import Session

    monkeypatch.setitem(sys.modules, "distributed", None)
    session = Session(journal_path=tmp_path / "j.sqlite", data_dir=tmp_path / "data")  # not even a sheet
    with pytest.raises(dask_run.ClusterError) as raised:
        asyncio.run(session.start(cluster="local:2"))
    assert str(raised.value) == dask_run.INSTALL
    assert session.journal is None and not (tmp_path / "j.sqlite").exists()


def test_a_step_in_batch_mode_is_not_sent_to_a_cluster_and_says_so_before_anything_starts(tmp_path):
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.session import Session

    session = Session(journal_path=tmp_path / "j.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": "openai", "model": "gpt-4o-mini"}},
                                             "steps": [{"type": "trim", "source": "text"},
                                                       {"type": "llm", "prompt": "{text}", "batch": True}]}))
    with pytest.raises(dask_run.ClusterError) as raised:
        asyncio.run(session.start(cluster="local:1"))
    assert str(raised.value) == ("2. LLM is in batch mode: the provider's Batch API does its rows, so the run goes "
                                 "from this computer, not a cluster (run it here, or turn batch mode off)")
    assert session.journal is None and not (tmp_path / "j.sqlite").exists()


def test_session_start_runs_the_chosen_rows_and_first_steps_on_the_cluster(scheduler, tmp_path):
    from batchgrid.core.session import Session

    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "trim", "source": "text", "output": "trimmed"},
        {"type": "change_case", "source": "trimmed", "case": "upper", "output": "upper"}]}))
    chosen = [1, 4, 7, 18]

    async def go():
        session = Session(journal_path=tmp_path / "j.sqlite", data_dir=tmp_path / "data", use_cache=False)
        await session.load_pipeline(pipeline)
        await session.open_sheet(sheet(tmp_path / "in.csv", [f"  row {i} " for i in range(20)]))
        engine = await session.start("all", rows=chosen, up_to=0, cluster=scheduler, partition_rows=2)
        reason, _ = await session.wait()
        await session.close()
        return session, engine, reason

    session, engine, reason = asyncio.run(go())
    assert reason == "finished"
    assert isinstance(engine, dask_run.ClusterEngine) and engine.partitions_run == 2
    results = session.store.results
    assert [i for i, r in enumerate(results) if r is not None] == chosen
    assert [results[i].outputs.get("trimmed") for i in chosen] == [f"row {i}" for i in chosen]
    assert all(results[i].outputs.get("upper") is None for i in chosen)  # the first step only


def test_stop_ends_a_cluster_run_on_the_workers_too_and_keeps_what_finished(scheduler, fresh, tmp_path):
    """Stop on a run on the cluster: the run ends as stopped and the workers stop too: once the
    cluster has no task left, the server has had at most the calls in flight at the stop (found: the
    workers went on with their partitions, 207 more paid calls in the 8 s after Stop). The rows that
    finished are kept, and the next run (resume) does only the others."""
    from batchgrid.core.run import events as ev
    from batchgrid.core.session import Session

    fresh.configure(latency=0.05)
    texts = [f"row {i}" for i in range(600)]

    async def idle(address: str) -> None:
        """Until the scheduler has no task of ours processing on any worker (a condition, not a time)."""
        async with distributed.Client(address, asynchronous=True) as client:
            while any((await client.processing()).values()):
                await asyncio.sleep(0.05)

    async def go():
        session = Session(journal_path=tmp_path / "j.sqlite", data_dir=tmp_path / "data", use_cache=False)
        await session.load_pipeline(llm_pipeline(tmp_path / "p.json", fresh, max_concurrency=4))
        await session.open_sheet(sheet(tmp_path / "in.csv", texts))
        first = asyncio.get_running_loop().create_future()
        session.listeners.append(lambda e: isinstance(e, ev.RowDone) and not first.done() and first.set_result(e))
        await session.start("all", cluster=scheduler, partition_rows=100)
        await first
        session.stop()
        at_stop = fresh.stats.requests
        stopped = await session.wait()
        await asyncio.wait_for(idle(scheduler), 60)
        after = fresh.stats.requests - at_stop
        kept = [i for i, r in enumerate(session.store.results) if r is not None and r.status == ev.DONE]
        await session.start("resume", cluster=scheduler, partition_rows=100)
        resumed = await session.wait()
        await session.close()
        return stopped, resumed, after, kept, session

    stopped, resumed, after, kept, session = asyncio.run(go())
    assert stopped[0] == "stopped" and resumed[0] == "finished"
    assert after <= 4  # at most the calls on the wire when Stop was pressed (max concurrency 4)
    assert 0 < len(kept) < len(texts)
    assert [r.status for r in session.store.results] == [ev.DONE] * len(texts)
    assert all(fresh.stats.per_prompt[texts[i]] == 1 for i in kept)  # kept rows: not asked again by the resume
