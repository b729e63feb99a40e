"""Where the heavy work runs: the :class:`Engine` protocol and the in-process :class:`LocalEngine`.

Three calls carry almost all of a run's time: embedding texts, selecting negatives from
embeddings, and sending judge requests. Every stage that does one of them takes an ``engine``;
``None`` means a :class:`LocalEngine` (this machine, this process). :class:`trueneg.distributed.RayEngine`
implements the same protocol over a Ray cluster and gives the same results, so a stage never
knows where its work ran.

Example::

    >>> from trueneg.engine import LocalEngine
    >>> from trueneg.models import EncoderConfig
    >>> eng = LocalEngine()
    >>> e = eng.embed(EncoderConfig(), ["a cat", "a dog"], "passage")  # doctest: +SKIP
    >>> e.shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from trueneg.judge.cache import Cache
    from trueneg.judge.client import Outcome, Request, SendStats
    from trueneg.judge.config import JudgeConfig, Stage
    from trueneg.mine import Selection
    from trueneg.models import Encoder, EncoderConfig

Kind = Literal["query", "passage"]


@runtime_checkable
class Engine(Protocol):
    """The three heavy calls. An implementation must return what :class:`LocalEngine` returns
    for the same arguments (embeddings up to float rounding, selections and answers exactly)."""

    def embed(self, encoder: EncoderConfig, texts: Sequence[str], kind: Kind) -> np.ndarray:
        """float32 ``(len(texts), dim)`` embeddings, in input order, of the model and settings
        ``encoder`` names (its ``model`` a local directory; ``None`` is the default model)."""
        ...

    def select(
        self,
        queries: np.ndarray,
        corpus: np.ndarray,
        positives: list[list[int]],
        **params: Any,
    ) -> Selection:
        """:func:`trueneg.mine.select_negatives` of one query row per example."""
        ...

    def send(
        self, config: JudgeConfig, cache: Cache, stage: Stage, requests: list[Request]
    ) -> tuple[SendStats, dict[str, Outcome]]:
        """Sends the requests of one judge stage; every answer is in ``cache`` when it returns
        (persisted before use: a killed run pays nothing twice)."""
        ...


class LocalEngine:
    """This machine: embedding with :class:`trueneg.models.Encoder` (each model loaded once per
    engine), selection by the Rust kernels, sends by the async OpenAI-compatible sender (or one
    Batch API upload for ``backend = "batch"``)."""

    def __init__(self) -> None:
        self._encoders: dict[EncoderConfig, Encoder] = {}

    def encoder(self, config: EncoderConfig) -> Encoder:
        """The loaded encoder for ``config`` (loaded on first use)."""
        from trueneg.models import Encoder, default_model_path

        key = config if config.model is not None else replace(config, model=default_model_path())
        enc = self._encoders.get(key)
        if enc is None:
            enc = self._encoders[key] = Encoder(key)
        return enc

    def embed(self, encoder: EncoderConfig, texts: Sequence[str], kind: Kind) -> np.ndarray:
        return self.encoder(encoder).encode(texts, kind, desc=f"embed {kind}s")

    def select(
        self,
        queries: np.ndarray,
        corpus: np.ndarray,
        positives: list[list[int]],
        **params: Any,
    ) -> Selection:
        from trueneg.mine import select_negatives

        return select_negatives(queries, corpus, positives, **params)

    def send(
        self, config: JudgeConfig, cache: Cache, stage: Stage, requests: list[Request]
    ) -> tuple[SendStats, dict[str, Outcome]]:
        from trueneg.judge.cascade import send_requests

        return send_requests(config, cache, stage, requests)


def embed_collection(
    coll: Any, encoder: EncoderConfig, engine: Engine | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(query embeddings in qid order, passage embeddings in pid order) of a collection, the
    passages as :func:`trueneg.texts.passage_texts` (title + text), on ``engine``."""
    from trueneg.texts import passage_texts

    eng = engine if engine is not None else LocalEngine()
    queries, passages = coll.queries["text"].to_pylist(), passage_texts(coll.passages)
    return eng.embed(encoder, queries, "query"), eng.embed(encoder, passages, "passage")
