"""Projected cost before a run: the first rows' requests, priced, scaled to every row.

For each sampled row the model steps build the exact requests they would send. Tokens are
estimated (about four characters each; answers at the step's max tokens, or a typical
length), requests already in the response cache cost nothing, and later steps see earlier
model outputs as placeholder text of the expected length. Cheap steps run for real; HTTP
and code steps do not run (their outputs are blank). Nothing is sent anywhere.

A step in batch mode (`"batch": true`) is priced at the provider's batch price (prices.BATCH_DISCOUNT:
half at OpenAI and Azure; the same price where a provider has no batch API), and the line leads
with what the run will cost: "$0.62 for 1,000 rows at the batch price ...; $1.24 without batch
mode". Steps not in batch mode are projected at both prices, so the line can offer the saving:
"in batch mode: $0.62 instead of $1.24". Calls made once per run (a knowledge base) stay at the
synchronous price.

A step with a condition (`when`) counts only the sampled rows that meet it: the projection
scales what those rows would cost, so a condition met by 3 rows in 20 projects 15% of the calls.

User code stays bounded here too: patterns run under their time limit (core/util/patterns.py),
and a step whose pattern ran out of time on one sampled row is not run on the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.providers.cache import CACHE_FILE, ResponseCache, cache_key
from batchgrid.core.providers.prices import PriceTable, money
from batchgrid.core.providers.profiles import resolve_profile
from batchgrid.core.providers.tokens import prompt_tokens
from batchgrid.core.steps import conditions
from batchgrid.core.steps.base import all_writes
from batchgrid.core.util.errors import StepError
from batchgrid.core.util.paths import default_data_dir
from batchgrid.core.util.patterns import PatternTooSlow

DEFAULT_SAMPLE = 20


@dataclass
class StepEstimate:
    step: str
    model: str
    calls: int = 0          # over all rows
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cached: int = 0         # sampled calls already in the cache
    priced: bool = True
    batch_cost: float = 0.0  # the same calls through the provider's Batch API
    sync_cost: float = 0.0   # the same calls one request at a time (= cost unless the step is in batch mode)
    batch: bool = False      # the step is in batch mode: `cost` is at the batch price


@dataclass
class CostEstimate:
    rows: int
    sampled: int
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0        # what the run will cost: steps in batch mode at the batch price
    batch_cost: float = 0.0  # every model step in batch mode (see the module docstring)
    sync_cost: float = 0.0   # no step in batch mode
    steps: list[StepEstimate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # steps whose requests could not be built, and why
    fallbacks: list[str] = field(default_factory=list)  # steps with fallbacks: projected with their first model

    @property
    def unpriced_models(self) -> list[str]:
        return sorted({s.model for s in self.steps if not s.priced})

    def describe(self) -> str:
        """One line for the run bar or the CLI."""
        if not self.steps:
            return "no model steps: nothing to pay for"
        batched = [s for s in self.steps if s.batch]
        price = ("" if not batched else " at the batch price" if len(batched) == len(self.steps)
                 else f" with {len(batched)} of {len(self.steps)} model steps in batch mode")
        line = (f"about {self.tokens_in + self.tokens_out:,} tokens, {money(self.cost)} for {self.rows:,} rows{price} "
                f"(projected from the first {self.sampled})")
        if self.sync_cost > self.cost:
            line += f"; {money(self.sync_cost)} without batch mode"
        if self.batch_saving():
            line += f"; {self.batch_saving()}"
        if self.unpriced_models:
            line += f"; no price for {', '.join(self.unpriced_models)}"
        if self.fallbacks:
            line += "; rows that fall back to another model cost more"
        return line

    def batch_saving(self) -> str:
        """What batch mode would cost, when that is less: "in batch mode: $0.62 instead of $1.24"."""
        if not self.cost or self.batch_cost >= self.cost:
            return ""
        if any(s.batch for s in self.steps):
            return f"every model step in batch mode: {money(self.batch_cost)}"
        return f"in batch mode: {money(self.batch_cost)} instead of {money(self.cost)}"


def estimate_cost(pipeline, rows, *, sample: int = DEFAULT_SAMPLE, data_dir: Path | None = None,
                  use_cache: bool = True) -> CostEstimate:
    """Projected tokens and cost of running `pipeline` over all of `rows` (an engine Table),
    from its first `sample` rows."""
    if data_dir is None:
        data_dir = default_data_dir()
    prices = PriceTable.load(data_dir)
    cache = None
    if use_cache and pipeline.settings.get("use_cache", True) and (Path(data_dir) / CACHE_FILE).exists():
        cache = ResponseCache.in_folder(data_dir)
    n = min(sample, len(rows))
    estimate = CostEstimate(rows=len(rows), sampled=n)
    per_row: dict[str, StepEstimate] = {}   # scaled from the sample to every row
    once: dict[str, StepEstimate] = {}      # once per run (knowledge bases): not scaled
    base_dir = pipeline.path.parent if pipeline.path else Path.cwd()
    tally = _Tally(pipeline.providers, prices, cache, per_row, once, estimate, base_dir)
    try:
        for i in range(n):
            tally.first_row = i == 0
            tally.walk(pipeline.steps, dict(rows.row(i)), "")
    finally:
        if cache is not None:
            cache.close()
    scale = len(rows) / n if n else 0.0
    for s in per_row.values():
        s.calls = round(s.calls * scale)
        s.tokens_in, s.tokens_out, s.cost = round(s.tokens_in * scale), round(s.tokens_out * scale), s.cost * scale
        s.batch_cost *= scale
        s.sync_cost *= scale
    for label, o in once.items():
        s = per_row.setdefault(label, StepEstimate(label, o.model))
        s.calls += o.calls
        s.tokens_in += o.tokens_in
        s.cost += o.cost
        s.batch_cost += o.batch_cost
        s.sync_cost += o.sync_cost
        s.cached += o.cached
        s.priced = s.priced and o.priced
    for s in per_row.values():
        estimate.tokens_in += s.tokens_in
        estimate.tokens_out += s.tokens_out
        estimate.cost += s.cost
        estimate.batch_cost += s.batch_cost
        estimate.sync_cost += s.sync_cost
    estimate.steps = list(per_row.values())
    return estimate


class _Tally:
    """Walks the steps for one sampled row, adding up the calls each model step would make."""

    def __init__(self, providers, prices, cache, per_row, once, estimate, base_dir: Path):
        self.providers, self.prices, self.cache = providers, prices, cache
        self.per_row, self.once, self.estimate, self.base_dir = per_row, once, estimate, base_dir
        self.first_row = True
        self.too_slow: set[int] = set()  # steps (by id) whose pattern ran out of time: not run again

    def walk(self, steps: Iterable[Any], row: dict[str, Any], prefix: str) -> dict[str, Any]:
        produced: dict[str, Any] = {}
        for number, step in enumerate(steps, 1):
            if not step.enabled:
                continue
            label = f"{prefix}{number}. {step.label}"
            children = step.children()
            outputs: dict[str, Any] = {}
            if not self.meets(step, label, row):
                outputs = {c: row.get(c) for c in all_writes(step)}  # skipped: blank, or as the row has it
            elif children:
                for name, branch in children.items():  # branches see the row as it was before them
                    outputs.update(self.walk(branch, dict(row), f"{label} › {name} › "))
            else:
                outputs = self.step(step, label, row)
            row.update(outputs)
            produced.update(outputs)
        return produced

    def meets(self, step, label: str, row: dict[str, Any]) -> bool:
        """The sampled row meets the step's condition (a step without one: always). A condition
        that cannot be tested counts as met: the projection errs towards paying."""
        if step.when is None:
            return True
        try:
            condition = conditions.parse(step.when)
            return condition is None or condition.unmet(row) is None
        except (StepError, PatternTooSlow) as exc:
            problem = f"{label}: {exc}"
            if problem not in self.estimate.problems:
                self.estimate.problems.append(problem)
            return True

    def step(self, step, label: str, row: dict[str, Any]) -> dict[str, Any]:
        blank = {c: "" for c in step.writes()}
        planned = getattr(step, "planned_calls", None)
        if planned is None:
            if step.external or step.runs_code or step.is_async() or id(step) in self.too_slow:
                return blank  # not run in an estimate: HTTP, code
            try:
                return step.apply(row)
            except PatternTooSlow as exc:
                self.too_slow.add(id(step))
                self.estimate.problems.append(f"{label}: {exc}")
            except Exception:  # the row would fail here in the run; its outputs count as blank
                pass
            return blank
        if step.config.get("fallbacks") and label not in self.estimate.fallbacks:
            self.estimate.fallbacks.append(label)  # projected with the step's own model, the first asked
        try:
            profile = resolve_profile(step.config.get("provider") or "", self.providers)
            calls = planned(row, profile)
            once = step.once_calls(profile, self.base_dir) if self.first_row else []
        except Exception as exc:
            self.estimate.problems.append(f"{label}: {exc}")
            return blank
        for path, request, _ in once:
            self.add(self.once, label, profile, path, request, 0)
        answer = max((tokens_out for _, _, tokens_out in calls), default=0)
        batch = step.config.get("batch") is True
        for path, request, tokens_out in calls:
            self.add(self.per_row, label, profile, path, request, tokens_out, batch=batch)
        placeholder = "x" * (answer * 4)  # later prompts are as long as this answer would be
        return {c: placeholder for c in step.writes()}

    def add(self, table, label: str, profile, path: str, request: dict, tokens_out: int, *,
            batch: bool = False) -> None:
        model = request["model"]
        s = table.setdefault(label, StepEstimate(label, model, batch=batch))
        tokens_in = prompt_tokens(request)
        s.calls += 1
        s.tokens_in += tokens_in
        s.tokens_out += tokens_out
        if self.cache is not None and cache_key(profile.base_url + path, request) in self.cache:
            s.cached += 1
            return
        price = self.prices.price(model, local=profile.preset.local)
        if price is None:
            s.priced = False
            return
        sync = price.cost(tokens_in, tokens_out)
        batch_price = self.prices.batch_price(model, profile.preset.name, local=profile.preset.local)
        # once per run (a knowledge base): not batched
        batched = (batch_price or price).cost(tokens_in, tokens_out) if table is self.per_row else sync
        s.sync_cost += sync
        s.batch_cost += batched
        s.cost += batched if batch else sync
