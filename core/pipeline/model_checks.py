"""Checks of a pipeline's model steps against its provider profiles: a profile that does not
exist, a step with no model to use, a key or server the user must set up first.

They walk the step tree, so they live here, above the steps; providers know nothing of steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchgrid.core.providers.profiles import DEFAULT_PROVIDER, api_key, default_profile_name, resolve_profile
from batchgrid.core.steps.base import Step
from batchgrid.core.steps.tree import Problem, iter_steps
from batchgrid.core.util.errors import StepError


def provider_problems(steps: Sequence[Step], providers: Mapping[str, Any]) -> list[Problem]:
    """Steps that name a provider profile the pipeline does not have, or have no model to use."""
    problems = []
    for visit in iter_steps(steps):
        step, path = visit.step, visit.path
        if not step.enabled or "provider" not in step.config:
            continue
        name = step.config.get("provider") or ""
        if name and name not in providers and not (name == DEFAULT_PROVIDER and not providers):
            known = ", ".join(providers) or f"none; leave it blank for {DEFAULT_PROVIDER}"
            problems.append(Problem(f"no provider profile named {name!r}; profiles are: {known}", path, "provider"))
            continue
        if not step.config.get("model") and isinstance(providers, dict):
            try:
                profile = resolve_profile(name, providers)
            except StepError:
                continue
            needed = getattr(step, "model_kind", "chat")
            default = profile.embedding_model if needed == "embedding" else profile.model
            if not default:
                field_name = "embedding_model" if needed == "embedding" else "model"
                problems.append(Problem(f"missing; provider {profile.name!r} has no default {field_name}, "
                                        f"so name the model here or set providers.{profile.name}.{field_name}",
                                        path, "model"))
        problems += _fallback_problems(step, path, providers)
    return problems


def _fallback_problems(step: Step, path, providers: Mapping[str, Any]) -> list[Problem]:
    """A model step's fallbacks: each names a profile the pipeline has, and has a model to use."""
    fallbacks = step.config.get("fallbacks")
    if not isinstance(fallbacks, list):
        return []
    problems = []
    for i, fallback in enumerate(fallbacks):
        if not isinstance(fallback, dict):
            continue  # the step's own check says so
        name = fallback.get("provider") or ""
        where = f"fallbacks[{i}]"
        if name and name not in providers and not (name == DEFAULT_PROVIDER and not providers):
            known = ", ".join(providers) or f"none; leave it blank for {DEFAULT_PROVIDER}"
            problems.append(Problem(f"no provider profile named {name!r}; profiles are: {known}", path, where))
            continue
        if fallback.get("model") or step.config.get("model") or not isinstance(providers, dict):
            continue
        try:
            profile = resolve_profile(name or step.config.get("provider") or "", providers)
        except StepError:
            continue
        if not profile.model:
            problems.append(Problem(f"no model; provider {profile.name!r} has no default model, so name one "
                                    f"here (\"model\": ...) or set providers.{profile.name}.model", path, where))
    return problems


def setup_problems(steps: Sequence[Step], providers: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None) -> list[str]:
    """What the user must set up before model steps can run (a key, a server), one line each.

    Checked before a run so that a missing key is said once, with what to do, instead of
    failing every row. Keyring entries are not read here (reading one may block)."""
    problems: list[str] = []
    seen: set[str] = set()
    for visit in iter_steps(steps, enabled_only=True):
        step = visit.step
        names = [step.config.get(p.name) or "" for p in step.params if p.kind == "provider"]
        fallbacks = step.config.get("fallbacks")
        if isinstance(fallbacks, list):  # a fallback's provider must be set up as well: said before the run
            names += [f["provider"] for f in fallbacks if isinstance(f, dict) and isinstance(f.get("provider"), str)
                      and f["provider"]]
        for name in names:
            name = name or default_profile_name(providers)
            if name in seen:
                continue
            seen.add(name)
            try:
                profile = resolve_profile(name, providers, environ)
                if not profile.keyring_service:
                    api_key(profile, environ)
            except StepError as exc:
                message = str(exc)
                if name == DEFAULT_PROVIDER and not providers:
                    message = (f'the step "{step.label}" needs a language model: set OPENAI_API_KEY to an OpenAI key, '
                               "or point OPENAI_BASE_URL at a local OpenAI-compatible server "
                               "(Ollama: http://127.0.0.1:11434/v1, LM Studio: http://127.0.0.1:1234/v1)")
                problems.append(message)
    return problems
