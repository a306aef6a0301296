"""Column summaries (OpenRefine's facets) as numbers: for one column of the results, its values
counted, a histogram of its numbers or of its texts' lengths, and its blanks, errors and rows not
run yet; and which rows a bar stands for, so a click on it can filter the table.

Kept up to date row by row from the store's changes (`ResultStore.on_change`): a live run costs
O(changed rows) per refresh plus one numpy histogram, never a recount of every cell. That is why
this is not pandas' `value_counts` on the column: recounting a million cells a few times a second
would hold the window's loop. numpy does the histograms.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy
from batchgrid.core.util.display import display_text

from . import events as ev
from .results import NOT_RUN, status_word
from .store import UNFINISHED, ResultStore

# What a cell is, for its summary (one byte a row).
VALUE, BLANK, ERROR, PENDING = 0, 1, 2, 3
KIND_NAMES = {BLANK: "blank", ERROR: "error", PENDING: "not run yet"}
TOP_VALUES = 15         # bars drawn; the rest are counted as "other values"
HISTOGRAM_BINS = 20     # about this many bins, on round edges
FEW_DISTINCT = 15       # a numeric column with at most this many values gets bars, not a histogram
MAX_CHOICES = 2000      # more distinct texts than this are not listed (OpenRefine's "too many choices")
_NUMBER_TEXT = 32       # a text this long or shorter is tried as a number ("4.5" from a model)
_WITHOUT_RESULT = (*UNFINISHED, NOT_RUN, ev.CANCELLED)
_NUMBER_START = frozenset("0123456789+-. \tiInN")  # how a text float() reads can begin (a raise costs more)


def nice_edges(lo: float, hi: float, target: int = HISTOGRAM_BINS, integers: bool = False) -> list[float]:
    """Bin edges on round numbers (a step of 1, 2 or 5 times a power of ten) covering [lo, hi],
    about `target` bins; whole numbers get a step of at least 1."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        step = 1.0 if integers or lo == 0 else 10 ** math.floor(math.log10(abs(lo)))
        start = math.floor(lo / step) * step
        return [start, start + step]
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integers:
        step = max(1.0, round(step))
    start = math.floor(lo / step) * step
    count = max(1, math.ceil((hi - start) / step + 1e-9))
    if start + count * step <= hi:  # hi falls on the last edge: give it a bin of its own
        count += 1
    return [start + i * step for i in range(count + 1)]


def histogram(values: numpy.ndarray, integers: bool = False) -> tuple[list[float], list[int]]:
    """(edges, counts) of finite values on `nice_edges`; each bin holds lo <= v < hi."""
    if values.size == 0:
        return [], []
    edges = nice_edges(float(values.min()), float(values.max()), integers=integers)
    counts = numpy.histogram(values, bins=numpy.asarray(edges))[0]
    # numpy's last bin is closed; ours are half-open, and nice_edges leaves room above the maximum
    return edges, [int(c) for c in counts]


def as_number(value: Any) -> float:
    """The value as a finite float, or NaN: numbers, and short texts that read as one."""
    kind = type(value)
    if kind is bool:
        return math.nan
    if kind is int or kind is float or isinstance(value, (int, float, numpy.number)):
        number = float(value)
    elif kind is str and len(value) <= _NUMBER_TEXT and value[:1] in _NUMBER_START:
        try:
            number = float(value)
        except ValueError:
            return math.nan
    else:
        return math.nan
    return number if math.isfinite(number) else math.nan


@dataclass(frozen=True)
class Pick:
    """What a bar or a bin stands for: `kind` is 'value' (text equal to `key`), 'other' (a value
    not among the top bars), 'blank', 'error', 'pending', 'range' (a number, or a text's length
    when `of` is 'lengths', with lo <= x < hi)."""

    kind: str
    key: str = ""
    lo: float = 0.0
    hi: float = 0.0
    of: str = "numbers"
    exclude: tuple[str, ...] = ()  # for 'other': the keys that have their own bar

    def describe(self, column: str) -> str:
        if self.kind == "value":
            return f"{column} = {self.key if len(self.key) <= 40 else self.key[:39] + '…'}"
        if self.kind == "other":
            return f"{column}: other values"
        if self.kind == "range":
            what = f"length of {column}" if self.of == "lengths" else column
            return f"{_number(self.lo)} ≤ {what} < {_number(self.hi)}"
        return f"{column}: {KIND_NAMES[{'blank': BLANK, 'error': ERROR, 'pending': PENDING}[self.kind]]}"


def _number(x: float) -> str:
    return display_text(float(x))


@dataclass
class Facts:
    """What a summary panel draws, at one moment."""

    column: int
    name: str
    rows: int
    values: int = 0        # cells with a value
    distinct: int = 0
    blanks: int = 0
    errors: int = 0        # rows that failed, where this column has no value
    pending: int = 0       # rows not run (or still running), where this column has no value yet
    numeric: bool = False  # every value is a number
    top: list[tuple[str, int]] = field(default_factory=list)
    other: int = 0         # values not among `top`
    histogram_of: str = ""  # 'numbers', 'lengths' or '' (none)
    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def bars(self) -> bool:
        """Bars for the values: a text column, or numbers with few distinct values."""
        return 0 < self.values and self.distinct <= (FEW_DISTINCT if self.numeric else MAX_CHOICES)


class ColumnSummary:
    """The running summary of one column of a ResultStore."""

    def __init__(self, store: ResultStore, column: int) -> None:
        self.store = store
        self.column = column
        self.rows = 0
        self.kinds = numpy.zeros(0, dtype=numpy.uint8)
        self.keys: list[str | None] = []
        self.numbers = numpy.zeros(0)
        self.lengths = numpy.zeros(0, dtype=numpy.int64)
        self.counts: Counter[str] = Counter()
        self.kind_counts = [0, 0, 0, 0]
        self.non_numbers = 0  # values that are not numbers (the column is numeric while 0)

    @property
    def name(self) -> str:
        header = self.store.header
        return header[self.column] if 0 <= self.column < len(header) else ""

    # ---- reading cells ----------------------------------------------------------------------
    def _cell(self, store: ResultStore, row: int, computed: bool) -> tuple[int, Any]:
        """(kind, value) of one cell. Output and run columns count only finished rows (a streamed
        answer or a retry's note is not the row's value yet); the status column is always a value."""
        if computed:
            status = store.status[row]
            if status in _WITHOUT_RESULT and self.column != _status_column(store):
                return (ERROR if status == ev.ERROR else PENDING), None
            value = store.value(row, self.column)
            if _blank(value):
                return (ERROR if status == ev.ERROR else BLANK), None
            if self.column == _status_column(store):
                value = status_word(value)  # "stopped", as the table says it
            return VALUE, value
        value = store.value(row, self.column)
        return (BLANK, None) if _blank(value) else (VALUE, value)

    # ---- building and updating ------------------------------------------------------------
    def rebuild(self) -> ColumnSummary:
        """Count every row at once. Returns self."""
        for _ in self.rebuild_in_steps(chunk=1 << 62):
            pass
        return self

    def rebuild_in_steps(self, chunk: int = 4096) -> Iterator[int]:
        """Count every row, `chunk` rows a step (yields the rows counted so far), so a window can
        count a big table between its events: a worker thread would hold the GIL against the
        window's thread for the whole count. A row that changes meanwhile is read as it is when
        its chunk comes; one already counted is told to `update` by the store's on_change."""
        source = self.store
        n = len(source)
        self.rows = n
        self.kinds = numpy.zeros(n, dtype=numpy.uint8)
        self.keys = [None] * n
        self.numbers = numpy.full(n, math.nan)
        self.lengths = numpy.full(n, -1, dtype=numpy.int64)
        self.counts = Counter()
        self.kind_counts = [0, 0, 0, 0]
        self.non_numbers = 0
        computed = self.column >= len(source.table.columns)
        inputs = None if computed else source.column_values(self.column)  # an input column: one list
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            if inputs is not None:
                cells = [(BLANK, None) if _blank(v) else (VALUE, v) for v in inputs[first:last]]
            else:
                cells = [self._cell(source, i, True) for i in range(first, last)]
            self._count(first, cells)
            yield last

    def _count(self, first: int, cells: list[tuple[int, Any]]) -> None:
        """Count a chunk of cells, rows first, first + 1, ... (not counted before)."""
        kinds = bytearray(len(cells))
        numbers = array("d", bytes(8 * len(cells)))
        lengths = array("q", bytes(8 * len(cells)))
        keys, counts, kind_counts = self.keys, self.counts, self.kind_counts
        nan = math.nan
        non_numbers = 0
        for j, (kind, value) in enumerate(cells):
            kinds[j] = kind
            kind_counts[kind] += 1
            if kind != VALUE:
                numbers[j], lengths[j] = nan, -1
                continue
            key = display_text(value)
            keys[first + j] = key
            counts[key] += 1
            number = as_number(value)
            numbers[j] = number
            if number != number:  # not a number: its length counts
                non_numbers += 1
                lengths[j] = len(key)
            else:
                lengths[j] = -1
        last = first + len(cells)
        self.kinds[first:last] = numpy.frombuffer(kinds, dtype=numpy.uint8)
        self.numbers[first:last] = numpy.frombuffer(numbers, dtype=numpy.float64)
        self.lengths[first:last] = numpy.frombuffer(lengths, dtype=numpy.int64)
        self.non_numbers += non_numbers

    def update(self, rows: Iterable[int]) -> list[int]:
        """Count these rows again (they changed in the store). Returns the rows whose cell changed."""
        store = self.store
        if len(store) != self.rows:  # another table: count it all
            self.rebuild()
            return list(range(self.rows))
        computed = self.column >= len(store.table.columns)
        changed = []
        for i in rows:
            kind, value = self._cell(store, i, computed)
            key = None if kind != VALUE else display_text(value)
            old_kind = int(self.kinds[i])
            if kind == old_kind and key == self.keys[i]:
                continue
            changed.append(i)
            self._forget(i, old_kind)
            self.kinds[i] = kind
            self.kind_counts[kind] += 1
            self.keys[i] = key
            if key is None:
                self.numbers[i], self.lengths[i] = math.nan, -1
                continue
            self.counts[key] += 1
            number = as_number(value)
            self.numbers[i] = number
            if number != number:
                self.non_numbers += 1
                self.lengths[i] = len(key)
            else:
                self.lengths[i] = -1
        return changed

    def _forget(self, i: int, kind: int) -> None:
        self.kind_counts[kind] -= 1
        key = self.keys[i]
        if key is not None:
            left = self.counts[key] - 1
            if left:
                self.counts[key] = left
            else:
                del self.counts[key]
            if self.numbers[i] != self.numbers[i]:
                self.non_numbers -= 1

    # ---- what to draw -----------------------------------------------------------------------
    def facts(self, top: int = TOP_VALUES) -> Facts:
        values = self.kind_counts[VALUE]
        numeric = values > 0 and self.non_numbers == 0
        facts = Facts(self.column, self.name, self.rows, values=values, distinct=len(self.counts),
                      blanks=self.kind_counts[BLANK], errors=self.kind_counts[ERROR],
                      pending=self.kind_counts[PENDING], numeric=numeric)
        if facts.bars:
            # most frequent first; ties in text order, so the bars do not shuffle between refreshes
            facts.top = heapq.nsmallest(top, self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
            facts.other = values - sum(c for _, c in facts.top)
        if numeric and not facts.bars:
            finite = self.numbers[~numpy.isnan(self.numbers)]
            facts.histogram_of = "numbers"
            facts.edges, facts.counts = histogram(finite, integers=bool(numpy.all(finite == numpy.round(finite))))
        elif not numeric and self.non_numbers > 0 and facts.distinct > FEW_DISTINCT:
            facts.histogram_of = "lengths"  # free text: how long the texts are says more than their values
            facts.edges, facts.counts = histogram(self.lengths[self.lengths >= 0], integers=True)
        return facts

    # ---- which rows a bar stands for --------------------------------------------------------
    def mask(self, pick: Pick) -> numpy.ndarray:
        """A bool per row: is this row's cell in `pick`?"""
        if pick.kind in ("blank", "error", "pending"):
            return self.kinds == {"blank": BLANK, "error": ERROR, "pending": PENDING}[pick.kind]
        if pick.kind == "range":
            data = self.numbers if pick.of == "numbers" else self.lengths.astype(float)
            with numpy.errstate(invalid="ignore"):
                return (data >= pick.lo) & (data < pick.hi) & (self.kinds == VALUE)
        if pick.kind == "value":
            key = pick.key
            return numpy.fromiter((k == key for k in self.keys), dtype=bool, count=self.rows)
        excluded = set(pick.exclude)
        return numpy.fromiter((k is not None and k not in excluded for k in self.keys), dtype=bool, count=self.rows)

    def matches(self, row: int, pick: Pick) -> bool:
        """Is one row's cell in `pick` (a row that changed during a run)?"""
        kind = int(self.kinds[row])
        if pick.kind in ("blank", "error", "pending"):
            return kind == {"blank": BLANK, "error": ERROR, "pending": PENDING}[pick.kind]
        if kind != VALUE:
            return False
        if pick.kind == "range":
            x = float(self.numbers[row]) if pick.of == "numbers" else float(self.lengths[row])
            return pick.lo <= x < pick.hi
        key = self.keys[row]
        return key == pick.key if pick.kind == "value" else key not in pick.exclude


def _status_column(store: ResultStore) -> int:
    return len(store.table.columns) + len(store.output_columns)


def _blank(value: Any) -> bool:
    if value is None:
        return True
    kind = type(value)
    if kind is str:
        return not value.strip()
    if kind is float:
        return value != value
    return display_text(value) == ""
