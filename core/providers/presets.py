"""Presets: what each common OpenAI-compatible server needs, so a profile can just say `"preset": "ollama"`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    base_url: str | None          # None: the profile must give one (Azure's endpoint)
    api_key_env: str | None       # where the key usually lives; None: the server needs no key
    needs_key: bool               # a missing key is an error (hosted services) or fine (local servers)
    model: str | None = None      # default chat model
    embedding_model: str | None = None
    local: bool = False           # runs on the user's machine: free, and "is it running?" on refusal
    running_hint: str = ""        # said when nothing listens at its address
    max_tokens_field: str = "max_tokens"  # OpenAI's newer models want max_completion_tokens


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("openai", "OpenAI", "https://api.openai.com/v1", "OPENAI_API_KEY", True,
           "gpt-4o-mini", "text-embedding-3-small", max_tokens_field="max_completion_tokens"),
    Preset("azure", "Azure OpenAI", None, "AZURE_OPENAI_API_KEY", True,
           max_tokens_field="max_completion_tokens"),
    Preset("ollama", "Ollama", "http://127.0.0.1:11434/v1", None, False,
           local=True, running_hint="is Ollama running?"),
    Preset("lmstudio", "LM Studio", "http://127.0.0.1:1234/v1", None, False,
           local=True, running_hint="is LM Studio's local server started?"),
    Preset("vllm", "vLLM", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", False,
           local=True, running_hint="is the vLLM server running?"),
    Preset("llamacpp", "llama.cpp server", "http://127.0.0.1:8080/v1", None, False,
           local=True, running_hint="is llama-server running?"),
    Preset("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", True,
           "openai/gpt-4o-mini", "openai/text-embedding-3-small"),
)}

DEFAULT_AZURE_API_VERSION = "2024-10-21"
