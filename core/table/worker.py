"""Reading untrusted files in a reader process: no file can kill, hang or swamp the app.

calamine is Rust: when a crafted file makes it ask for gigabytes, the allocation fails and
Rust aborts the whole process (SIGABRT), which Python cannot catch. So the window and the
CLI read through here: `preview`, `read_table` and `list_sheets` as in `read.py`, run in a
reader process whose address space is capped (RLIMIT_AS: what it holds after its imports
plus READ_MEMORY) with a time limit per call. A reader that dies or runs out of time is
killed and replaced, and the caller gets one line saying why (an InputError).

Why our own small pool and not concurrent.futures.ProcessPoolExecutor: on Python 3.11 an
executor cannot kill a busy worker (a hung read would hold it forever) and a dead worker
breaks the whole executor. Readers are kept (one idle reader waits for the next file, so
only the first read pays the start-up, about a second of imports); concurrent reads each
get their own reader. The DataFrame comes back pickled without a memo (numeric and date
columns as raw buffers); `read_rows` makes it a `Table` in the caller's thread.
"""

from __future__ import annotations

import atexit
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchgrid.core.util.errors import InputError

READ_SECONDS = 10.0        # a read of a small file slower than this is a hang
SECONDS_PER_MB = 0.5       # a bigger file may take this per MB more (calamine parses a whole xls/xlsb/ods
                           # sheet even for a preview: a big, real one must not be called damaged)
READ_MEMORY = 1 << 30      # address space a reader may add to what it holds after its imports
START_SECONDS = 120.0      # a reader's start-up (imports) on a slow, busy machine
_KEEP_IDLE = 1


def preview(path, *, sheet: str | int | None = None, header_row: int | None = None, rows: int = 200,
            password: str | None = None):
    """`read.preview` in a reader process."""
    return _call(path, "preview", _seconds(path), sheet=sheet, header_row=header_row, rows=rows, password=password)


def list_sheets(path, *, password: str | None = None) -> list[str]:
    return _call(path, "list_sheets", _seconds(path), password=password)


def read_table(path, *, sheet: str | int | None = None, header_row: int | None = None, limit: int | None = None,
               password: str | None = None):
    """`read.read_table` in a reader process: a DataFrame."""
    return _call(path, "read_table", _seconds(path), sheet=sheet, header_row=header_row, limit=limit,
                 password=password)


def read_rows(path, *, sheet: str | int | None = None, header_row: int | None = None, limit: int | None = None,
              password: str | None = None):
    """The sheet as a `Table` (what a run reads). The DataFrame crosses the pipe (numeric and date
    columns as raw buffers) and becomes a Table here: as fast as reading in-process, where a
    Table's million Python objects would be pickled one by one (70% slower, measured)."""
    from .columnar import Table

    return Table.from_frame(read_table(path, sheet=sheet, header_row=header_row, limit=limit, password=password))


def _seconds(path) -> float:
    try:
        size = Path(path).stat().st_size
    except OSError:
        size = 0
    return READ_SECONDS + SECONDS_PER_MB * size / 1e6


@atexit.register
def shutdown() -> None:
    """Stop the idle readers (at exit; a later read starts a new one)."""
    with _lock:
        readers, _idle[:] = list(_idle), []
    for reader in readers:
        reader.close()


# ---- the parent's side --------------------------------------------------------------------

_lock = threading.Lock()
_idle: list[_Reader] = []


def _call(path, function: str, seconds: float, **kwargs) -> Any:
    path = Path(path)
    with _lock:
        reader = _idle.pop() if _idle else None
    if reader is not None and not reader.alive():
        reader.close()  # reaped
        reader = None
    if reader is None:
        reader = _Reader()
    try:
        result = reader.call(path, function, kwargs, seconds)
    except BaseException:
        reader.close()
        raise
    with _lock:
        if len(_idle) < _KEEP_IDLE:
            _idle.append(reader)
            reader = None
    if reader is not None:
        reader.close()
    return result


class _ReaderGone(Exception):
    pass


class _Reader:
    def __init__(self) -> None:
        # A fresh interpreter (not multiprocessing's spawn, which re-imports the caller's main
        # script): `python -m batchgrid.core.table.worker`, talking pickles over its stdin/stdout.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               # Arrow's own allocators reserve large arenas at first use, which the cap would refuse.
               "ARROW_DEFAULT_MEMORY_POOL": "system"}
        self.process = subprocess.Popen([sys.executable, "-m", __name__, str(READ_MEMORY)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.sender = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.receiver = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.ready = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, path: Path, function: str, kwargs: dict, seconds: float) -> Any:
        try:
            if not self.ready:
                if not self.receiver.poll(START_SECONDS) or self.receiver.recv() != "ready":
                    raise _ReaderGone()
                self.ready = True
            self.sender.send((function, str(path), kwargs))
            if not self.receiver.poll(seconds):
                self.kill()
                raise InputError(f"{path.name} cannot be read: reading it took more than {seconds:.0f} s "
                                 "(the file is damaged, or made to be slow to read)")
            status, value = self.receiver.recv()
        except (EOFError, OSError, _ReaderGone):
            raise self._died(path) from None
        if status == "ok":
            return value
        raise value

    def _died(self, path: Path) -> InputError:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code in (-signal.SIGABRT, -signal.SIGKILL, 134, 137):  # a refused allocation aborts Rust code
            return InputError(f"{path.name} cannot be read: it needs more than {READ_MEMORY >> 30} GB of memory "
                              "(the file is damaged, or made to exhaust memory)")
        return InputError(f"{path.name} cannot be read: the reader stopped on it (exit code {code}); "
                          "the file is damaged")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        for conn in (self.sender, self.receiver):
            conn.close()  # the reader sees the end of its input and exits
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()


# ---- the reader process -------------------------------------------------------------------

def _serve(receiver: Connection, sender: Connection, memory: int) -> None:
    from . import read

    functions: dict[str, Callable[..., Any]] = {"preview": read.preview, "list_sheets": read.list_sheets,
                                                "read_table": read.read_table}
    limit_memory(memory)
    sender.send("ready")
    while True:
        try:
            function, path, kwargs = receiver.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", functions[function](path, **kwargs))
        except InputError as exc:
            reply = ("error", InputError(str(exc)) if type(exc) is InputError else exc)
        except MemoryError:
            reply = ("error", InputError(f"{Path(path).name} is too large to load into memory"))
        except Exception as exc:  # a bug: one line, and the reader lives on
            reply = ("error", InputError(f"{Path(path).name} cannot be read: Batchgrid failed on it "
                                         f"({type(exc).__name__}); please report this file"))
        try:
            sender.send_bytes(_dumps(reply))
        except MemoryError:
            sender.send(("error", InputError(f"{Path(path).name} is too large to load into memory")))


def _dumps(value: Any) -> memoryview:
    """Pickled without a memo: a million distinct cells need no million-entry dict (which
    would double the reader's peak memory); a structure that refers to itself falls back."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    try:
        pickler.dump(value)
    except ValueError:
        return memoryview(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return buffer.getbuffer()


def limit_memory(extra: int) -> None:
    """Cap this process's address space at what it holds now plus `extra` bytes (Linux, macOS)."""
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the time limit still applies
        return
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            size = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
    except (OSError, StopIteration):
        return  # no /proc: the time limit still applies
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _main() -> None:
    """The reader process: requests on stdin, replies on stdout (print() goes to stderr instead)."""
    receiver = Connection(os.dup(0), writable=False)
    sender = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    _serve(receiver, sender, int(sys.argv[1]))


if __name__ == "__main__":
    _main()
