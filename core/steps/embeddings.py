"""Embedding steps: embed a text into a vector; find the closest entries of a knowledge base.

Rows' texts go through the run's embedding batcher (core/providers/batcher.py): many rows,
one request. A Similar step's knowledge base (a list, or a sheet) is read and embedded
once per run, while the step is bound, before any row: its tokens and cost are the run's,
not those of whichever row came first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from batchgrid.core.providers.batcher import EmbeddingBatcher, _decode, _encode, vector_of
from batchgrid.core.providers.client import EMBEDDINGS, embedding_request, parse_embeddings
from batchgrid.core.providers.profiles import Profile
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import InputError, StepError

from .base import FILE, INT, OUTPUT, SOURCE, STRINGS, TEXT, BoundStep, Param, register
from .models import ModelStep, batch_param, model_param, provider_param

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext


class EmbeddingStep(ModelStep):
    model_kind = "embedding"

    def embedding_call(self, text: str, profile: Profile) -> tuple[str, dict, int]:
        return (EMBEDDINGS, embedding_request(self.model_for(profile), text, self.config.get("dimensions")), 0)

    async def batcher(self, resources: RunResources) -> EmbeddingBatcher:
        provider = await self.provider(resources)
        return resources.models.batcher(provider, self.model_for(provider.profile),
                                        self.config.get("dimensions"), self.config.get("batch_size"))


def embedding_params() -> tuple[Param, ...]:
    return (
        Param("dimensions", INT, None, "Shorter vectors (text-embedding-3 models); blank = the model's own.",
              minimum=1),
        Param("batch_size", INT, None, "Texts per request; blank = the provider's batch_size (256).",
              minimum=1, maximum=2048),
    )


@register
class Embed(EmbeddingStep):
    type = "embed"
    title = "Embed"
    description = ("Turn a column's text into a vector; rows queued for it are sent together, up to 256 texts a "
                   "request.")
    params = (
        provider_param(),
        model_param("embedding"),
        Param("source", SOURCE, "", "A column name, or a template such as \"{title} {body}\".", required=True,
              label="Read from"),
        *embedding_params(),
        batch_param(),
        Param("output", OUTPUT, "", "Name of the new column (default: <source>_embedding).", label="Write to"),
    )
    batch_path = EMBEDDINGS

    def default_output(self, param_name: str) -> str:
        source = self.config.get("source") or ""
        return f"{source}_embedding" if source and "{" not in source else "embedding"

    def planned_calls(self, row, profile):
        return [self.embedding_call(self.source_text(row), profile)]

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        vector = await (await self.batcher(ctx.resources)).embed(ctx, self.text_to_embed(row))
        return {self.output_name(): vector.tolist()}

    def text_to_embed(self, row: Mapping[str, Any]) -> str:
        text = self.source_text(row)
        if not text.strip():
            raise StepError("nothing to embed: the text is empty")
        return text

    # batch mode: one text per request, cached as the micro-batcher caches each text (its key, its value)
    def batch_request(self, row, profile):
        return embedding_request(self.model_for(profile), self.text_to_embed(row), self.config.get("dimensions"))

    def batch_cache_value(self, body, request):
        vectors, tokens = parse_embeddings(body, 1)
        return {"vector": _encode(vectors[0]), "tokens": tokens}

    def batch_outputs(self, value, request):
        return {self.output_name(): _decode(value["vector"]).tolist()}


@register
class Similar(EmbeddingStep):
    type = "similar"
    title = "Similar / retrieve"
    description = ("Find the closest entries of a reference list or sheet (labels, or passages for {context} "
                   "in a later LLM step) by embedding similarity.")
    params = (
        provider_param(),
        model_param("embedding"),
        Param("source", SOURCE, "", "The row's text (a column or a template), or a column of vectors from "
              "an Embed step with the same model.", required=True, label="Read from"),
        Param("references", STRINGS, [], "Reference texts: labels for zero-shot classification, or passages."),
        Param("reference_file", FILE, "", "Or a sheet or CSV of passages (relative to the pipeline file)."),
        Param("reference_sheet", TEXT, "", "Sheet of the reference file (blank = the first)."),
        Param("reference_column", TEXT, "", "Column of the reference file holding the texts (blank = the first)."),
        Param("top_k", INT, 3, "How many matches to keep.", minimum=1, maximum=100),
        *embedding_params(),
        Param("output", OUTPUT, "", "Column for the best match (default: match); <output>_score and "
              "<output>_matches are written beside it.", label="Write to"),
        Param("context_output", OUTPUT, "", "Column with the top matches as one text, for {context} in a later "
              "step (default: context).", label="Context column"),
    )

    def default_output(self, param_name: str) -> str:
        return "context" if param_name == "context_output" else "match"

    def writes(self) -> list[str]:
        out = self.output_name()
        return [out, f"{out}_score", f"{out}_matches", self.output_name("context_output")]

    def check(self) -> list[tuple[str, str]]:
        has_list, has_file = bool(self.config.get("references")), bool(self.config.get("reference_file"))
        if has_list == has_file:
            return [("references", "give either a list of references or a reference file, not "
                     + ("both" if has_list else "neither"))]
        return []

    def reference_texts(self, base_dir: Path, path: Path | None = None) -> list[str]:
        """The references: the list, or the texts of the reference file (`path` when a run has
        resolved it, which refuses a file outside the pipeline's folder unless trusted)."""
        if self.config.get("references"):
            return [t for t in (str(r).strip() for r in self.config["references"]) if t]
        from batchgrid.core.table.worker import read_table  # a reader process: no file can crash the run

        if path is None:
            path = Path(self.config["reference_file"]).expanduser()
            path = path if path.is_absolute() else Path(base_dir) / path
        frame = read_table(path, sheet=self.config.get("reference_sheet") or None)
        column = self.config.get("reference_column") or (frame.columns[0] if len(frame.columns) else None)
        if column is None or column not in frame.columns:
            raise InputError(f"{path.name}: no column {column!r}; columns are: {', '.join(map(str, frame.columns))}")
        texts = [tpl.as_text(v).strip() for v in frame[column].tolist()]
        texts = [t for t in texts if t]
        if not texts:
            raise InputError(f"{path.name}: the column {column!r} has no text to compare with")
        return texts

    def planned_calls(self, row, profile):
        value = self.source_value(row)
        return [] if vector_of(value) is not None else [self.embedding_call(tpl.as_text(value), profile)]

    def once_calls(self, profile, base_dir):
        return [self.embedding_call(text, profile) for text in self.reference_texts(base_dir)]

    async def bind(self, resources: RunResources) -> KnowledgeBase:
        """Read the references (a big sheet: in a worker thread) and embed them, once per run."""
        file = self.config.get("reference_file")
        path = resources.resolve(file) if file and not self.config.get("references") else None
        texts = await asyncio.to_thread(self.reference_texts, resources.base_dir, path)
        batcher = await self.batcher(resources)
        shared = resources.shared
        if shared is None:
            raise RuntimeError("a Similar step is bound by the engine, during a run")
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        key = ("references", batcher.provider.name, batcher.model, batcher.dimensions, digest)

        async def embed_all() -> np.ndarray:
            matrix = np.vstack(await batcher.embed_many(shared, texts))  # charged to the run
            return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

        matrix = await resources.models.once(key, embed_all)  # two steps, one knowledge base: embedded once
        return KnowledgeBase(self, texts, matrix, batcher)


class KnowledgeBase(BoundStep):
    """A Similar step bound to one run: the references and their unit vectors."""

    def __init__(self, step: Similar, texts: list[str], matrix: np.ndarray, batcher: EmbeddingBatcher):
        super().__init__(step, is_async=True)
        self.similar = step
        self.texts = texts
        self.matrix = matrix
        self.batcher = batcher
        self.top_k = min(step.config["top_k"], len(texts))
        self.output = step.output_name()
        self.context_output = step.output_name("context_output")

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        value = self.similar.source_value(row)
        query = vector_of(value)
        if query is None:
            text = tpl.as_text(value)
            if not text.strip():
                raise StepError("nothing to compare: the text is empty")
            query = await self.batcher.embed(ctx, text)
        matrix = self.matrix
        if query.shape[0] != matrix.shape[1]:
            raise StepError(f"the row's vector has {query.shape[0]} numbers but the references' have "
                            f"{matrix.shape[1]}: embed both with the same model and dimensions")
        scores = matrix @ (query / max(float(np.linalg.norm(query)), 1e-12))
        k = self.top_k
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        texts = [self.texts[i] for i in best]
        out = self.output
        return {
            out: texts[0],
            f"{out}_score": round(float(scores[best[0]]), 4),
            f"{out}_matches": "\n".join(f"{float(scores[i]):.3f}  {self.texts[i]}" for i in best),
            self.context_output: "\n\n".join(texts),
        }
