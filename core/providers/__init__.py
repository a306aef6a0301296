"""Model providers: one OpenAI-compatible client for OpenAI, Azure, Ollama, LM Studio, vLLM,
llama.cpp, OpenRouter and the like; their limits, errors, prices, the response cache and cost.

    profiles   the pipeline's `providers` section: checked, resolved, given a key (env or keyring)
    presets    what each common server needs
    client     Provider: chat and embeddings through the openai SDK, usage and cost per call
    limiter    a provider's own limits: in flight, requests and tokens per minute, 429 back-off
    errors     SDK exceptions in words, retryable or not
    batcher    native batching for embeddings
    cache      the response cache (SQLite)
    prices     the editable price table
    budget     pause a run whose projected cost would pass its budget
    estimate   projected cost before a run
    run        what one run's model steps share (in RunResources.extras)
"""

from .budget import BudgetGuard, install_budget
from .cache import ResponseCache, cache_key
from .estimate import CostEstimate, estimate_cost
from .presets import PRESETS
from .prices import DEFAULT_PRICES, PriceTable, money, save_user_prices
from .profiles import (DEFAULT_PROVIDER, Profile, provider_problems, resolve_profile, setup_problems,
                       validate_providers)

__all__ = ["BudgetGuard", "CostEstimate", "DEFAULT_PRICES", "DEFAULT_PROVIDER", "PRESETS", "PriceTable", "Profile",
           "ResponseCache", "cache_key", "estimate_cost", "install_budget", "money", "provider_problems", "resolve_profile",
           "save_user_prices", "setup_problems", "validate_providers"]
