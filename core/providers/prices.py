"""Model prices in US dollars per million tokens: built-in defaults plus the user's own table.

The user's table is `prices.json` in the data folder (beside the journal), the same shape
as DEFAULT_PRICES; its entries win. Local servers (Ollama, LM Studio, vLLM, llama.cpp, and
any OpenAI-compatible server OPENAI_BASE_URL points at) cost nothing unless the user's table
names the model. A model with no price costs 0 and is reported as unpriced, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batchgrid.core.util.errors import InputError

PRICES_FILE = "prices.json"

# The providers' Batch APIs bill a fraction off the synchronous price, by preset: OpenAI's /v1/batches
# and Azure OpenAI's global batch are half price. A preset not listed here offers no batch API
# (local servers cost nothing anyway).
BATCH_DISCOUNT: dict[str, float] = {"openai": 0.50, "azure": 0.50}

# Published list prices (USD per 1M tokens), standard tier, as of mid-2025.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-5": {"input": 1.25, "output": 10.00},
    "gpt-5-mini": {"input": 0.25, "output": 2.00},
    "gpt-5-nano": {"input": 0.05, "output": 0.40},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4-turbo": {"input": 10.00, "output": 30.00},
    "gpt-3.5-turbo": {"input": 0.50, "output": 1.50},
    "o1": {"input": 15.00, "output": 60.00},
    "o3": {"input": 2.00, "output": 8.00},
    "o3-mini": {"input": 1.10, "output": 4.40},
    "o4-mini": {"input": 1.10, "output": 4.40},
    "text-embedding-3-small": {"input": 0.02, "output": 0.0},
    "text-embedding-3-large": {"input": 0.13, "output": 0.0},
    "text-embedding-ada-002": {"input": 0.10, "output": 0.0},
    "claude-3-5-haiku": {"input": 0.80, "output": 4.00},
    "claude-3-7-sonnet": {"input": 3.00, "output": 15.00},
    "claude-sonnet-4": {"input": 3.00, "output": 15.00},
    "gemini-2.0-flash": {"input": 0.10, "output": 0.40},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
    "gemini-2.5-pro": {"input": 1.25, "output": 10.00},
    "mistral-small-latest": {"input": 0.10, "output": 0.30},
    "mistral-large-latest": {"input": 2.00, "output": 6.00},
}


@dataclass(frozen=True)
class Price:
    input: float   # per million tokens
    output: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1_000_000


FREE = Price(0.0, 0.0)


class PriceTable:
    def __init__(self, prices: Mapping[str, Mapping[str, float]] | None = None, *, user: Iterable[str] = ()):
        self.prices = {name.lower(): Price(float(p.get("input", 0)), float(p.get("output", 0)))
                       for name, p in (DEFAULT_PRICES if prices is None else prices).items()}
        self.user = {name.lower() for name in user}  # models the user priced (they price local servers too)

    @classmethod
    def load(cls, data_dir: Path | None) -> PriceTable:
        """Defaults overlaid with the user's prices.json (if there is one)."""
        merged = {k: dict(v) for k, v in DEFAULT_PRICES.items()}
        user = read_user_prices(Path(data_dir) / PRICES_FILE) if data_dir is not None else {}
        merged.update(user)
        return cls(merged, user=user)

    def price(self, model: str, *, local: bool = False) -> Price | None:
        """The model's price; None when unknown. Dated or vendor-prefixed names find their family
        ("gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini" -> "gpt-4o-mini")."""
        name = (model or "").lower()
        if local:
            return self.prices.get(name, FREE) if name in self.user else FREE
        for candidate in (name, name.rsplit("/", 1)[-1]):
            if candidate in self.prices:
                return self.prices[candidate]
            family = [k for k in self.prices if candidate.startswith(k + "-")]
            if family:
                return self.prices[max(family, key=len)]
        return None

    def cost(self, model: str, tokens_in: int, tokens_out: int, *, local: bool = False) -> float:
        price = self.price(model, local=local)
        return price.cost(tokens_in, tokens_out) if price else 0.0

    def batch_price(self, model: str, preset: str, *, local: bool = False) -> Price | None:
        """The model's price through the provider's Batch API (the synchronous one where it has none)."""
        price = self.price(model, local=local)
        if price is None:
            return None
        keep = 1.0 - batch_discount(preset)
        return Price(price.input * keep, price.output * keep)

    def batch_cost(self, model: str, tokens_in: int, tokens_out: int, *, preset: str, local: bool = False) -> float:
        price = self.batch_price(model, preset, local=local)
        return price.cost(tokens_in, tokens_out) if price else 0.0


def batch_discount(preset: str) -> float:
    """The fraction a provider's Batch API takes off its price: 0.5 at OpenAI and Azure, 0 elsewhere."""
    return BATCH_DISCOUNT.get(preset, 0.0)


def money(amount: float) -> str:
    """Dollars as people read them: cents, or the digits that matter for tiny amounts."""
    if amount == 0 or amount >= 0.01:
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0")


def read_user_prices(path: Path) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: the price table cannot be read ({exc})") from None
    problems = [name for name, p in data.items() if not isinstance(p, dict)
                or not all(isinstance(p.get(k, 0), (int, float)) for k in ("input", "output"))] \
        if isinstance(data, dict) else ["(the file)"]
    if problems:
        raise InputError(f"{path}: every entry must look like {{\"model\": {{\"input\": 0.15, \"output\": 0.6}}}} "
                         f"(dollars per million tokens); check {problems[0]}")
    return data


def save_user_prices(data_dir: Path, prices: Mapping[str, Mapping[str, float]]) -> Path:
    """Write the user's price table (the editable one); returns its path."""
    path = Path(data_dir) / PRICES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(prices), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
