"""Model steps: LLM, structured output, classify (the embedding steps are in embeddings.py).

Every call goes through the run's provider (core/providers, reached through the run's
`resources.models`): the engine's retries and concurrency slots, the provider's own
limits, the response cache, usage and cost. A step only builds its request from the row
and reads the reply.

The instructions Classify and Structured output depend on (the labels, the fields) are in the
user message, after the row's text: some chat templates drop the system message, and the model
would never see them. When a server refuses json_schema, both steps fall back (Structured
output to JSON mode, Classify to text) for that provider and model for the rest of the run, and
say so in the trace (`mode`). An answer cut at the token limit is said to be cut: an error for
the steps that parse it, a warning in the LLM step's trace.

Fallbacks (`fallbacks`: other models or providers, in order): a row whose model fails in a way
retrying cannot fix (an unknown model, a 400, a transient error past the engine's attempts), or
answers what does not validate (not JSON, a field missing, a label not in the list), or is rate
limited past `fallback_wait`, asks the next one. Transient errors retry the same candidate under the
engine's policy. The row says which answered (a column, and `answered_by` in the trace); each call
is priced by its own provider and model. In batch mode the step's own model answers through the batch,
and the rows whose batch answer fails (an error line, an answer that does not validate, an expired
batch's undone row) are asked of the fallbacks one by one afterwards (`fall_back`; core/run/batch_fallbacks.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from batchgrid.core.providers.client import CHAT, ChatReply, Provider, SchemaRefused, cut_off_message, parse_chat
from batchgrid.core.providers.profiles import Profile
from batchgrid.core.providers.tokens import DEFAULT_ANSWER_TOKENS, text_tokens
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import RetryableError, StepError

from .base import (
    BOOL,
    CHOICE,
    FLOAT,
    INT,
    JSON,
    MULTILINE,
    OUTPUT,
    PROVIDER,
    STRINGS,
    TEMPLATE,
    TEXT,
    Param,
    Step,
    register,
)

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext

PROVIDER_HELP = ("Provider profile; blank = the pipeline's first profile, or OpenAI from OPENAI_API_KEY "
                 "and OPENAI_BASE_URL when the pipeline has none.")
FIELD_TYPES = ("string", "number", "integer", "boolean", "list")


def provider_param() -> Param:
    return Param("provider", PROVIDER, "", PROVIDER_HELP)


def model_param(kind: str = "chat") -> Param:
    which = "embedding_model" if kind == "embedding" else "model"
    return Param("model", TEXT, "", f"Model name; blank = the provider profile's {which}.")


def batch_param() -> Param:
    return Param("batch", BOOL, False, "Send every row's request at once through the provider's Batch API, at its "
                 "batch price (half price at OpenAI and Azure). Answers come back together, within 24 hours; "
                 "closing the app does not lose them.", label="Batch mode (half price)")


def fallback_params() -> tuple[Param, ...]:
    return (
        Param("fallbacks", JSON, [], "Other models to ask, in order, when this one fails for a row (an error "
              "retrying cannot fix, an answer that does not validate, a rate limit longer than Fallback wait): "
              "a list such as [{\"provider\": \"openai\", \"model\": \"gpt-4o-mini\"}]; a blank provider or "
              "model is the step's own. A column (<output>_model, or <prefix>answered_by) says which answered. "
              "In batch mode, rows whose batch answer fails are asked of them one by one, at their normal price."),
        Param("fallback_wait", FLOAT, None, "With fallbacks: a model rate limited for longer than this many "
              "seconds hands the row to the next one; blank = wait as usual.", minimum=0),
    )


def sampling_params() -> tuple[Param, ...]:
    return (
        Param("temperature", FLOAT, None, "Randomness, 0 to 2; blank = the model's default.", minimum=0, maximum=2),
        Param("max_tokens", INT, None, "Longest answer in tokens; blank = the model's limit.", minimum=1),
        Param("seed", INT, None, "Ask for repeatable answers (if the model supports it)."),
        Param("stop", STRINGS, [], "Stop the answer at any of these texts."),
    )


class ModelStep(Step):
    group = "Models"
    external = True
    model_kind = "chat"  # or "embedding": which default model of the profile it uses

    def model_for(self, profile: Profile, model: str = "") -> str:
        model = model or self.config.get("model") or (profile.embedding_model if self.model_kind == "embedding"
                                                      else profile.model) or ""
        if not model and profile.model_problem:
            raise StepError(profile.model_problem)
        if not model:
            field = "embedding_model" if self.model_kind == "embedding" else "model"
            raise StepError(f"no model: set the step's model, or {field} in provider profile {profile.name!r}")
        return model

    async def provider(self, resources: RunResources) -> Provider:
        return await resources.models.provider(self.config.get("provider") or "")

    # For the projected cost (core/providers/estimate.py): the requests, exactly as they would be sent.
    def planned_calls(self, row: Mapping[str, Any], profile: Profile) -> list[tuple[str, dict, int]]:
        """(path, request, expected answer tokens) for each call this row would make."""
        raise NotImplementedError

    def once_calls(self, profile: Profile, base_dir) -> list[tuple[str, dict, int]]:
        """Calls made once per run, whatever the number of rows (a knowledge base)."""
        return []

    # ---- batch mode (core/run/batch_mode.py): the row's one request, its answer without a call ----
    batch_path = CHAT  # the provider path of the request (and of its response cache key)

    @property
    def batch(self) -> bool:
        return bool(self.config.get("batch"))

    def batch_request(self, row: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
        """The request this row would send one by one (StepError when the row cannot make one)."""
        raise NotImplementedError

    def batch_cache_value(self, body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """An answer body from the provider's batch as the response cache keeps it (StepError: not an answer)."""
        raise NotImplementedError

    def batch_outputs(self, value: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """The row's outputs from a cached answer (`batch_cache_value`'s), as `run` would write them."""
        raise NotImplementedError

    def batch_answer_tokens(self) -> int:
        """Answer tokens expected per row, for the budget check before a batch is submitted."""
        return 0

    def fallbacks(self) -> list[dict[str, str]]:
        """Other models asked for a row its own fails (ChatStep's); in batch mode, after the batch."""
        return []


# ---- chat steps ------------------------------------------------------------------------------
class ChatStep(ModelStep):
    FALLBACK = ""  # the mode used when the server refuses json_schema (the steps that have a schema mode)

    # ---- fallbacks: other models asked when one fails for a row --------------------------------
    def fallbacks(self) -> list[dict[str, str]]:
        raw = self.config.get("fallbacks")
        return [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []

    def candidates(self) -> list[tuple[str, str]]:
        """(provider, model) to ask in order: the step's own, then its fallbacks ("" = the step's own)."""
        own = (str(self.config.get("provider") or ""), str(self.config.get("model") or ""))
        return [own, *((str(f.get("provider") or own[0]), str(f.get("model") or own[1])) for f in self.fallbacks())]

    def model_column(self) -> str:
        """The column that says which model answered (written only when the step has fallbacks)."""
        return self.output_name() + "_model"

    def model_columns(self) -> list[str]:
        return [self.model_column()] if self.fallbacks() else []

    def writes(self) -> list[str]:
        return super().writes() + self.model_columns()

    def check(self) -> list[tuple[str, str]]:
        return self.fallback_problems()

    def fallback_problems(self) -> list[tuple[str, str]]:
        raw = self.config.get("fallbacks")
        if raw in (None, []):
            return []
        if not isinstance(raw, list):
            return [("fallbacks", "a list of models to try, e.g. [{\"provider\": \"local\", \"model\": \"llama3.1\"}]")]
        problems = []
        for i, f in enumerate(raw):
            where = f"fallbacks[{i}]"
            if not isinstance(f, dict):
                problems.append((where, "each fallback is {\"provider\": ..., \"model\": ...}"))
                continue
            unknown = sorted(set(f) - {"provider", "model"})
            if unknown:
                problems.append((where, f"unknown key {unknown[0]!r}; a fallback has provider and model"))
            elif any(not isinstance(f.get(k, ""), str) for k in ("provider", "model")):
                problems.append((where, "provider and model are names (text)"))
            elif not f.get("provider") and not f.get("model"):
                problems.append((where, "name a provider, a model or both"))
        if not problems:
            candidates = self.candidates()
            for i, candidate in enumerate(candidates[1:]):
                if candidate in candidates[: i + 1]:
                    problems.append((f"fallbacks[{i}]", "the same model on the same provider is already asked before it"))
        return problems

    def answered_by(self, provider: Provider, model: str) -> str:
        """How a row names the model that answered it: with its provider when the step's models are on
        several."""
        return f"{model} at {provider.name}" if len({name for name, _ in self.candidates()}) > 1 else model

    async def answer(self, row: Mapping[str, Any], ctx: StepContext, stream_to: str | None = None) -> dict[str, Any]:
        """The row's outputs: from the step's model, or from the first fallback that answers with
        outputs that validate."""
        candidates = self.candidates()
        if len(candidates) == 1:
            return self.outputs(await self.ask(row, ctx, stream_to=stream_to))
        return await self._in_turn(row, ctx, candidates, [], {}, None, stream_to)

    async def fall_back(self, row: Mapping[str, Any], ctx: StepContext, own: str, error: BaseException,
                        cost: float) -> dict[str, Any]:
        """Batch mode: the row's outputs from its fallbacks, once the step's own model (`own`: its label) answered
        the row's batch request with `error` (an error line, an answer that does not validate), for `cost`."""
        failed = [f"{own}: {str(error) or type(error).__name__}"]
        return await self._in_turn(row, ctx, self.candidates()[1:], failed, {own: cost}, getattr(error, "raw", None))

    async def _in_turn(self, row: Mapping[str, Any], ctx: StepContext, candidates: list[tuple[str, str]],
                       failed: list[str], costs: dict[str, float], raw: str | None,
                       stream_to: str | None = None) -> dict[str, Any]:
        """Ask `candidates` in order; the first whose outputs validate answers. `failed` and `costs`: what the
        models asked before them said and cost this row (the trace's `fallbacks` and `costs`)."""
        wait = self.config.get("fallback_wait")
        for i, (name, model) in enumerate(candidates):
            label = model or name or "the default model"
            last = i == len(candidates) - 1
            asking = _Candidate(ctx, None if last or wait is None else float(wait))
            try:
                provider = await ctx.resources.models.provider(name)
                model = self.model_for(provider.profile, model)
                label = self.answered_by(provider, model)
                out = self.outputs(await self.ask(row, asking, stream_to=stream_to,
                                                  provider=provider, model=model))
            except StepError as exc:
                failed.append(f"{label}: {exc}")
                raw = exc.raw if exc.raw is not None else raw
                asking.details.pop("warning", None)  # a cut answer's warning is in its error; another answered
                continue
            finally:
                costs[label] = costs.get(label, 0.0) + asking.cost
                ctx.note(**asking.details)
            ctx.note(costs=costs, **({"fallbacks": "; then ".join(failed)} if failed else {}))
            ctx.note(answered_by=label)
            return {**out, self.model_column(): label}
        ctx.note(costs=costs)
        raise StepError("every model failed: " + "; then ".join(failed), raw=raw)

    def messages(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = []
        system = self.system_text(row)
        if system:
            messages.append({"role": "system", "content": system})
        user = tpl.render(self.config["prompt"], row)
        instructions = self.instructions()
        messages.append({"role": "user", "content": user + "\n\n" + instructions if instructions else user})
        return messages

    def system_text(self, row: Mapping[str, Any]) -> str:
        system = self.config.get("system") or ""
        return tpl.render(system, row) if system else ""

    def instructions(self) -> str:
        """What the step needs the model to follow, sent after the row's text in the user message."""
        return ""

    def mode(self, provider: Provider | None = None, model: str = "") -> str:
        """The mode to ask in: the step's, or its fallback when this provider refused json_schema."""
        mode = str(self.config.get("mode") or "")
        if mode == "schema" and provider is not None and model in provider.schema_refused:
            return self.FALLBACK
        return mode

    def request_for(self, row: Mapping[str, Any], profile: Profile, mode: str | None = None) -> dict[str, Any]:
        c = self.config
        request: dict[str, Any] = {"model": self.model_for(profile), "messages": self.messages(row)}
        if c.get("temperature") is not None:
            request["temperature"] = c["temperature"]
        if c.get("max_tokens"):
            request[profile.max_tokens_field] = c["max_tokens"]
        if c.get("seed") is not None:
            request["seed"] = c["seed"]
        if c.get("stop"):
            request["stop"] = list(c["stop"])
        return request

    def answer_tokens(self) -> int:
        return self.config.get("max_tokens") or DEFAULT_ANSWER_TOKENS

    def planned_calls(self, row, profile):
        return [(CHAT, self.request_for(row, profile), self.answer_tokens())]

    def batch_request(self, row, profile):
        return self.request_for(row, profile)

    def batch_cache_value(self, body, request):
        return parse_chat(body, request).to_cache()

    def batch_outputs(self, value, request):
        return self.outputs(ChatReply(value["text"], value["tokens_in"], value["tokens_out"],
                                      value.get("finish_reason", ""), cached=True))

    def batch_answer_tokens(self) -> int:
        return self.answer_tokens()

    def outputs(self, reply: ChatReply) -> dict[str, Any]:
        """The row's outputs from the model's answer (its `run` after the call; batch mode's too)."""
        raise NotImplementedError

    async def ask(self, row: Mapping[str, Any], ctx: StepContext, stream_to: str | None = None, *,
                  provider: Provider | None = None, model: str = "") -> ChatReply:
        """One answer from one model: the step's own, or `provider` and `model` (a fallback's)."""
        if provider is None:
            provider = await self.provider(ctx.resources)
        model = self.model_for(provider.profile, model)

        def request(mode: str | None = None) -> dict[str, Any]:
            request = self.request_for(row, provider.profile, mode)
            request["model"] = model
            return request

        if not self.FALLBACK:
            return await provider.chat(ctx, request(), stream_to=stream_to)
        mode = self.mode(provider, model)
        try:
            reply = await provider.chat(ctx, request(mode), stream_to=stream_to)
        except SchemaRefused:  # said once per provider and model: ask again, without json_schema
            mode = self.mode(provider, model)
            if mode == "schema":
                raise
            reply = await provider.chat(ctx, request(mode), stream_to=stream_to)
        refused = mode != self.config.get("mode")
        ctx.note(mode=f"{mode} (the server refused json_schema)" if refused else mode)
        return reply

    def cut_off(self, reply: ChatReply, error: StepError) -> StepError:
        """The error to report when the answer did not parse: said as cut off when it was."""
        if reply.finish_reason != "length":
            return error
        return StepError(cut_off_message({"max_tokens": self.config.get("max_tokens")}), raw=reply.text)


@register
class LLM(ChatStep):
    type = "llm"
    title = "LLM"
    description = "Send a prompt built from the row to a language model; its answer streams into a new column."
    params = (
        provider_param(),
        model_param(),
        Param("system", TEMPLATE, "", "System message (instructions), may use {column} placeholders."),
        Param("prompt", TEMPLATE, "", "User message, e.g. \"Summarise in one line: {review}\".", required=True),
        *sampling_params(),
        Param("stream", BOOL, True, "Show the answer as it arrives (not in batch mode)."),
        batch_param(),
        *fallback_params(),
        Param("output", OUTPUT, "", "Name of the new column (default: answer).", label="Write to"),
    )

    def default_output(self, param_name: str) -> str:
        return "answer"

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        out = self.output_name()
        return await self.answer(row, ctx, stream_to=out if self.config["stream"] else None)

    def outputs(self, reply: ChatReply) -> dict[str, Any]:
        return {self.output_name(): reply.text}


@register
class StructuredOutput(ChatStep):
    type = "structured"
    title = "Structured output"
    description = "Extract named fields from the row with a model; each field becomes its own column."
    params = (
        provider_param(),
        model_param(),
        Param("system", TEMPLATE, "", "Extra instructions, may use {column} placeholders."),
        Param("prompt", TEMPLATE, "", "What to read, e.g. \"Invoice: {text}\".", required=True),
        Param("fields", JSON, [], "Fields to extract: a list of {\"name\", \"type\", \"description\"}; type is "
              "string, number, integer, boolean or list.", required=True),
        Param("mode", CHOICE, "schema", "schema: the model must follow a JSON schema (OpenAI, vLLM, recent "
              "Ollama); json: JSON mode plus instructions (any server).", choices=("schema", "json")),
        Param("prefix", TEXT, "", "Put this before every field's column name (e.g. \"invoice_\")."),
        *sampling_params(),
        batch_param(),
        *fallback_params(),
    )

    def fields(self) -> list[dict[str, str]]:
        fields = self.config.get("fields")
        return [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []

    def writes(self) -> list[str]:
        return [self.config["prefix"] + str(f.get("name", "")) for f in self.fields()] + self.model_columns()

    def model_column(self) -> str:
        return self.config["prefix"] + "answered_by"

    def check(self) -> list[tuple[str, str]]:
        return self.field_problems() + self.fallback_problems()

    def field_problems(self) -> list[tuple[str, str]]:
        fields = self.config.get("fields")
        if not isinstance(fields, list) or not fields:
            return [("fields", "add at least one field: {\"name\": \"total\", \"type\": \"number\"}")]
        problems, seen = [], set()
        for i, f in enumerate(fields):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"].strip():
                problems.append((f"fields[{i}]", "each field needs a \"name\" (text)"))
                continue
            if f["name"] in seen:
                problems.append((f"fields[{i}]", f"the field {f['name']!r} is listed twice"))
            seen.add(f["name"])
            kind = f.get("type", "string")
            if kind not in FIELD_TYPES:
                problems.append((f"fields[{i}].type", f"{kind!r} is not one of: {', '.join(FIELD_TYPES)}"))
            unknown = set(f) - {"name", "type", "description"}
            if unknown:
                problems.append((f"fields[{i}]", f"unknown key {sorted(unknown)[0]!r}; a field has name, type, description"))
        return problems

    def schema(self) -> dict[str, Any]:
        properties = {}
        for f in self.fields():
            kind = f.get("type", "string")
            prop: dict[str, Any] = {"type": ["array", "null"], "items": {"type": "string"}} if kind == "list" \
                else {"type": [kind, "null"]}
            if f.get("description"):
                prop["description"] = f["description"]
            properties[f["name"]] = prop
        return {"type": "object", "properties": properties, "required": list(properties),
                "additionalProperties": False}

    FALLBACK = "json"

    def instructions(self) -> str:
        lines = ["Extract the following fields from the text above and reply with one JSON object only, with "
                 "exactly these keys (use null when the text does not say):"]
        for f in self.fields():
            kind = f.get("type", "string")
            kind = "list of strings" if kind == "list" else kind
            lines.append(f"- {f['name']} ({kind})" + (f": {f['description']}" if f.get("description") else ""))
        return "\n".join(lines)

    def request_for(self, row, profile, mode=None):
        request = super().request_for(row, profile)
        if (mode or self.config["mode"]) == "schema":
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "fields", "strict": True, "schema": self.schema()}}
        else:
            request["response_format"] = {"type": "json_object"}
        return request

    def answer_tokens(self) -> int:
        return self.config.get("max_tokens") or 20 * len(self.fields()) + 10

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        return await self.answer(row, ctx)

    def outputs(self, reply: ChatReply) -> dict[str, Any]:
        try:
            return self.parse(reply.text)
        except StepError as exc:
            raise self.cut_off(reply, exc) from None

    def parse(self, text: str) -> dict[str, Any]:
        data = _json_object(text)
        if data is None:
            raise StepError(f"the model's answer is not a JSON object: {_short(text)}", raw=text)
        out = {}
        for f in self.fields():
            name = f["name"]
            if name not in data:
                raise StepError(f"the model's answer has no field {name!r}: {_short(text)}", raw=text)
            try:
                out[self.config["prefix"] + name] = _typed(data[name], f.get("type", "string"))
            except ValueError as exc:
                raise StepError(f"field {name!r}: {exc}", raw=text) from None
        return out


@register
class Classify(ChatStep):
    type = "classify"
    title = "Classify"
    description = "Put each row in one of your labels (or several); an answer outside the list is an error."
    params = (
        provider_param(),
        model_param(),
        Param("prompt", TEMPLATE, "", "The text to classify, e.g. \"{review}\".", required=True,
              label="Text to classify"),
        Param("labels", JSON, [], "The labels: a list such as [\"positive\", \"negative\"], or label to "
              "description: {\"bug\": \"something is broken\", ...}.", required=True),
        Param("multiple", BOOL, False, "Allow several labels per row (written comma-separated)."),
        Param("instructions", MULTILINE, "", "Extra guidance for the model (what the labels mean, edge cases)."),
        Param("mode", CHOICE, "text", "text: the model answers with the label (any server); schema: a JSON schema "
              "lets it answer nothing but the labels (OpenAI, vLLM, recent Ollama). The answer is checked "
              "against the list either way.", choices=("text", "schema")),
        *sampling_params(),
        batch_param(),
        *fallback_params(),
        Param("output", OUTPUT, "", "Name of the new column (default: label).", label="Write to"),
    )

    def default_output(self, param_name: str) -> str:
        return "label"

    def labels(self) -> dict[str, str]:
        """Label -> description (possibly empty), in the user's order."""
        raw = self.config.get("labels")
        if isinstance(raw, dict):
            return {str(k): str(v or "") for k, v in raw.items()}
        labels: dict[str, str] = {}
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict):
                labels[str(item.get("label", ""))] = str(item.get("description") or "")
            else:
                labels[str(item)] = ""
        return labels

    def check(self) -> list[tuple[str, str]]:
        return self.label_problems() + self.fallback_problems()

    def label_problems(self) -> list[tuple[str, str]]:
        raw = self.config.get("labels")
        if not isinstance(raw, (list, dict)) or not raw:
            return [("labels", "add at least two labels, e.g. [\"positive\", \"negative\"]")]
        if isinstance(raw, list) and any(isinstance(i, dict) and not i.get("label") for i in raw):
            return [("labels", "each label object needs a \"label\"")]
        labels = self.labels()
        if any(not label.strip() for label in labels):
            return [("labels", "a label is empty")]
        if len({_norm(label) for label in labels}) < len(raw):
            return [("labels", "two labels are the same")]
        if len(labels) < 2 and not self.config.get("multiple"):
            return [("labels", "add at least two labels to choose from")]
        return []

    FALLBACK = "text"

    def system_text(self, row: Mapping[str, Any]) -> str:
        return ""

    def instructions(self) -> str:
        how = ("one or more of these labels. Answer with the matching labels only, exactly as written, separated "
               "by commas, nothing else." if self.config["multiple"] else
               "exactly one of these labels. Answer with the label only, exactly as written, nothing else.")
        lines = [f"Classify the text above into {how}", "Labels:"]
        lines += [f"- {label}" + (f": {d}" if d else "") for label, d in self.labels().items()]
        if self.config.get("instructions"):
            lines += ["", self.config["instructions"]]
        return "\n".join(lines)

    def request_for(self, row, profile, mode=None):
        request = super().request_for(row, profile)
        if (mode or self.config["mode"]) == "schema":
            one = {"type": "string", "enum": list(self.labels())}
            answer = {"labels": {"type": "array", "items": one}} if self.config["multiple"] else {"label": one}
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "classification", "strict": True,
                "schema": {"type": "object", "properties": answer, "required": list(answer),
                           "additionalProperties": False}}}
        return request

    def answer_tokens(self) -> int:
        longest = max((text_tokens(label) for label in self.labels()), default=1)
        return self.config.get("max_tokens") or longest * (len(self.labels()) if self.config["multiple"] else 1) + 2

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        return await self.answer(row, ctx)

    def outputs(self, reply: ChatReply) -> dict[str, Any]:
        try:
            return {self.output_name(): self.parse(reply.text)}
        except StepError as exc:
            raise self.cut_off(reply, exc) from None

    def parse(self, text: str) -> str:
        if self.config["mode"] == "schema":  # {"label": "x"} or {"labels": ["x", "y"]}; still checked below
            data = _json_object(text) or {}
            answer = data.get("labels", data.get("label"))
            if isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
                text = ", ".join(answer)
            elif isinstance(answer, str):
                text = answer
        by_norm = {_norm(label): label for label in self.labels()}
        whole = by_norm.get(_norm(text))
        if whole is not None:
            return whole
        parts = [p for p in re.split(r"[,;\n]+", text) if p.strip()] if self.config["multiple"] else []
        found = [by_norm[_norm(p)] for p in parts if _norm(p) in by_norm]
        if parts and len(found) == len(parts):
            return ", ".join(dict.fromkeys(found))
        shown = ", ".join(self.labels())
        raise StepError(f"the model answered {_short(text)!r}, which is not "
                        f"{'among' if self.config['multiple'] else 'one of'} the labels: {shown}", raw=text)


class _Candidate:
    """A row's context while one of a step's models (with fallbacks) is asked: it adds up what that
    model cost the row, and with `wait` (a fallback after it and a fallback wait) a rate limit that
    would keep the row waiting longer than `wait` seconds (the server's Retry-After plus the time
    already waited on this model) hands the row to the next model instead. Everything else is the
    row's context."""

    def __init__(self, ctx: StepContext, wait: float | None):
        self._ctx = ctx
        self._wait = wait
        self.cost = 0.0
        self.details: dict[str, Any] = {}  # its trace details, handed to the row's when it is done

    def note(self, **details: Any) -> None:
        self.details.update(details)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def add_usage(self, tokens_in: int = 0, tokens_out: int = 0, cost: float = 0.0, cached: bool = False) -> None:
        self.cost += cost
        self._ctx.add_usage(tokens_in, tokens_out, cost, cached)

    async def call(self, make_call: Callable[[], Awaitable[Any]], *, limiter: Any = None) -> Any:
        wait = self._wait
        if wait is None:
            return await self._ctx.call(make_call, limiter=limiter)
        first: float | None = None

        async def attempt() -> Any:
            nonlocal first
            try:
                return await make_call()
            except RetryableError as exc:
                if not exc.rate_limited:
                    raise
                now = time.monotonic()
                first = now if first is None else first
                # Not told to the provider's limiter: its hold would hold the fallback too when it is
                # another model of the same provider (servers limit each model on its own).
                if (exc.retry_after or 0.0) + now - first > wait:
                    raise StepError(f"{exc}: rate limited for longer than the fallback wait ({wait:g} s)") from None
                raise

        return await self._ctx.call(attempt, limiter=_HeldGate(limiter, wait) if limiter is not None else None)


class _HeldGate:
    """A provider's gate (core/providers/limiter.py) that does not keep a row with a fallback waiting
    past its fallback wait: when the provider holds every request for longer (429s were the rule for
    the steps without fallbacks, or for the last model of a chain), the row goes to the next model
    without asking this one."""

    __slots__ = ("gate", "wait")

    def __init__(self, gate: Any, wait: float):
        self.gate, self.wait = gate, wait

    def acquire(self) -> _HeldGate:
        return self

    async def __aenter__(self) -> _HeldGate:
        held = self.gate.limiter.blocked_until - time.monotonic()
        if held > self.wait:
            raise StepError(f"the provider holds every request for {held:.0f} s more (rate limited), longer than "
                            f"the fallback wait ({self.wait:g} s)")
        await self.gate.__aenter__()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.gate.__aexit__(exc_type, exc, tb)

    def rate_limited(self, wait: float) -> None:
        self.gate.rate_limited(wait)


# ---- reading model answers ------------------------------------------------------------------
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.S)


def _json_object(text: str) -> dict | None:
    """The JSON object in a model's answer, allowing the ```json fences local models like to add."""
    m = _FENCE.match(text)
    body = m.group(1) if m else text
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected text, got {json.dumps(value)[:60]}")
        return str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {json.dumps(value)[:60]}")
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {json.dumps(value)[:60]}")
        if kind == "integer":
            if float(value) != int(value):
                raise ValueError(f"expected a whole number, got {value}")
            return int(value)
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {json.dumps(value)[:60]}")
        return [tpl.as_text(v) for v in value]
    return value


def _norm(text: str) -> str:
    """A label as compared: no case, no surrounding quotes, spaces or final full stop."""
    return " ".join(str(text).strip().strip("\"'`*").strip().rstrip(".").strip().lower().split())


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
