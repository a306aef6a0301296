"""A step's trace keeps the path of its step, also through the journal (a resumed row's
inspector finds its steps by path, as a fresh row's does)."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from batchgrid.core.run.journal import Journal


def test_a_journalled_trace_keeps_its_step_path(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    try:
        run_id = journal.new_run("job", "hash", None, None, 1)
        trace = [ev.StepTrace("1. Trim", 0.001, path=(0,)),
                 ev.StepTrace("2. Parallel branches › a.b[0] › 1. Length", 0.002, path=(1, "a.b[0]", 0))]
        journal.write_rows(run_id, [("h", ev.RowResult(0, ev.DONE, {"n": 1}, trace=trace))])
        (_, again), = journal.load_rows(run_id).values()
        assert [t.path for t in again.trace] == [(0,), (1, "a.b[0]", 0)]
        assert [t.step for t in again.trace] == [t.step for t in trace]
    finally:
        journal.close()
