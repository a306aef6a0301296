"""Small jobs off the event loop for the editor (reading a lookup file's sheet and column names,
previewing a step's outputs on a row), with the answer delivered on the GUI thread.

A worker thread never holds a widget: it gets a plain function and a token, and the answer comes
back through one long-lived relay object, which calls the owner's callback on the GUI thread only
if the owner still exists. Works under qasync and under a plain Qt loop (tests without asyncio).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Signal

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="batchgrid-editor")
_tokens = itertools.count(1)


class _Relay(QObject):
    done = Signal(int, object, object)  # token, result, error (from any thread; queued to the GUI thread)

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, tuple[QObject, Callable[[Any, BaseException | None], None]]] = {}
        self.done.connect(self._deliver)

    def _deliver(self, token: int, result: Any, error: BaseException | None) -> None:
        owner, callback = self.waiting.pop(token, (None, None))
        if owner is not None and callback is not None and shiboken6.isValid(owner):
            callback(result, error)


_relay: _Relay | None = None


def _the_relay() -> _Relay:
    global _relay
    if _relay is None:
        _relay = _Relay()
        app = QCoreApplication.instance()
        if app is not None:
            _relay.moveToThread(app.thread())  # answers are delivered on the GUI thread
    return _relay


def submit(owner: QObject, work: Callable[[], Any], on_done: Callable[[Any, BaseException | None], None]) -> int:
    """Run `work()` in a worker thread; `on_done(result, error)` runs on the GUI thread afterwards,
    unless `owner` has been deleted meanwhile. `work` must not touch widgets."""
    relay = _the_relay()
    token = next(_tokens)
    relay.waiting[token] = (owner, on_done)

    def run() -> None:
        try:
            result, error = work(), None
        except Exception as exc:  # said by the owner, in words
            result, error = None, exc
        relay.done.emit(token, result, error)

    _executor.submit(run)
    return token


def pending() -> int:
    """Jobs whose answer has not been delivered yet (tests wait for 0)."""
    return len(_relay.waiting) if _relay is not None else 0
