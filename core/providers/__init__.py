"""Model providers (a leaf layer: it knows nothing of steps, pipelines or runs): one OpenAI-compatible client for OpenAI, Azure, Ollama, LM Studio, vLLM,
llama.cpp, OpenRouter and the like; their limits, errors, prices, the response cache and cost.

    profiles   the pipeline's `providers` section: checked, resolved, given a key (env or keyring)
    presets    what each common server needs
    client     Provider: chat and embeddings through the openai SDK, usage and cost per call
    limiter    a provider's own limits: in flight, requests and tokens per minute, 429 back-off
    errors     SDK exceptions in words, retryable or not
    batcher    native batching for embeddings
    cache      the response cache (SQLite)
    prices     the editable price table
    run        what one run's model steps share (RunResources.models; the engine closes it)
"""

from .cache import ResponseCache, cache_key
from .presets import PRESETS
from .prices import DEFAULT_PRICES, PriceTable, money, save_user_prices
from .profiles import DEFAULT_PROVIDER, Profile, resolve_profile, validate_providers

__all__ = ["DEFAULT_PRICES", "DEFAULT_PROVIDER", "PRESETS", "PriceTable", "Profile", "ResponseCache", "cache_key",
           "money", "resolve_profile", "save_user_prices", "validate_providers"]
