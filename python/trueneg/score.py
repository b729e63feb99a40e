"""Effective Contrastive Information (ECI): a training-free score of a collection's hard
negatives, from the embeddings of a frozen encoder (after Sinha, Seetharaman and Bansal, arXiv
2603.20990 v1, whose formulas are only summarised publicly; the definition here is trueneg's).

For an example with query ``q``, positives ``P`` and negatives ``N`` (unit-length embeddings, so
``q.x`` is a cosine):

- ``s_p = q.p`` for each positive ``p`` (NV-Retriever's positive-aware reference);
- ``b``: the in-batch baseline, the mean of ``q.p'`` over the first positive of the next
  ``in_batch`` (16) examples of other queries: what an easy, in-batch negative scores;
- per negative, with ``s = q.n``, each averaged over the positives (training contrasts a
  negative with each of them): **hardness** ``h = clip((s - b) / (s_p - b), 0, 1)`` (0: no
  harder than an in-batch negative; 1: as close as the positive) and **safety**
  ``σ = clip((s_p - s) / (δ |s_p|), 0, 1)`` (1 below ``(1 - δ) s_p``, NV-Retriever's TopK-PercPos
  bound with ``δ = 0.05``; 0 at the positive's score and above: a likely false negative);
- **signal magnitude** ``S = mean h`` and **safety** ``Σ = mean σ``; **discriminative
  efficiency** ``DE = 2 S Σ / (S + Σ)``, their harmonic mean (the paper's term: high only when the
  negatives are both hard and safe);
- **information capacity** ``IC = ln(1 + |N|)``: the InfoNCE bound on the mutual information a
  loss with ``|N|`` negatives can certify (van den Oord et al., 2018; the paper's term);
- ``ECI = IC x DE``; a collection's ECI is the mean over its examples.

The kernel is Rust (``_core.effective_contrastive_information``); every term is kept per example
(and per negative) so a user can see why a set scores as it does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trueneg import _core
from trueneg.collection import Collection
from trueneg.config import at_least, positive
from trueneg.fix import _csr

__all__ = ["ECI_TERMS", "EciSummary", "ScoreConfig", "eci_of", "score_collections"]

#: per-example terms, in the order tables show them
ECI_TERMS = ("information_capacity", "signal", "safety", "efficiency", "eci")


@dataclass(frozen=True)
class ScoreConfig:
    """``trueneg score-negatives`` / :func:`trueneg.score_negatives`."""

    #: the safety band: a negative above (1 - delta) x a positive's score is unsafe (for it)
    delta: float = 0.05
    #: examples whose positives make the in-batch baseline
    in_batch: int = 16

    def __post_init__(self) -> None:
        positive("delta", self.delta)
        at_least("in_batch", self.in_batch, 1)


@dataclass
class EciSummary:
    """A collection's ECI: the means of the per-example terms, and what they are made of."""

    collection: str
    examples: int
    negatives: int
    eci: float
    information_capacity: float
    signal: float
    safety: float
    efficiency: float
    #: share of negatives with safety below 1 (within delta of a positive's score or above)
    unsafe_share: float
    #: share of negatives scoring above their example's mean positive score
    above_positive_share: float
    seconds: float = 0.0
    per_subset: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = np.ascontiguousarray(x / np.maximum(n, 1e-12), np.float32)
    return out


def eci_of(
    coll: Collection,
    query_embeddings: np.ndarray,
    passage_embeddings: np.ndarray,
    config: ScoreConfig | None = None,
) -> tuple[EciSummary, dict[str, np.ndarray]]:
    """ECI of ``coll`` from embeddings of its queries (qid order) and passages (pid order),
    normalised here. Returns the summary and the per-example (and per-negative) terms."""
    cfg = config or ScoreConfig()
    t0 = time.perf_counter()
    ex = coll.examples
    pos_off, pos = _csr(ex["positives"])
    neg_off, neg = _csr(ex["negatives"])
    qids = np.ascontiguousarray(ex["qid"].to_numpy().astype(np.uint32))
    terms = _core.effective_contrastive_information(
        _unit(query_embeddings),
        _unit(passage_embeddings),
        qids,
        pos_off,
        pos,
        neg_off,
        neg,
        delta=cfg.delta,
        in_batch=cfg.in_batch,
    )
    n_neg = np.diff(neg_off)
    sp = np.repeat(terms["positive_score"], n_neg)
    mean = {k: float(terms[k].mean()) if len(ex) else 0.0 for k in ECI_TERMS}
    summary = EciSummary(
        collection=str(coll.path),
        examples=len(ex),
        negatives=len(neg),
        eci=mean["eci"],
        information_capacity=mean["information_capacity"],
        signal=mean["signal"],
        safety=mean["safety"],
        efficiency=mean["efficiency"],
        unsafe_share=float((terms["negative_safety"] < 1).mean()) if len(neg) else 0.0,
        above_positive_share=float((terms["negative_score"] > sp).mean()) if len(neg) else 0.0,
    )
    subset = np.asarray(coll.queries["subset"].to_pylist(), dtype=object)[qids] if len(ex) else []
    for s in sorted(set(subset)):
        m = subset == s
        summary.per_subset.append(
            {"subset": s, "examples": int(m.sum())}
            | {k: float(terms[k][m].mean()) for k in ECI_TERMS}
        )
    summary.seconds = time.perf_counter() - t0
    return summary, terms


def score_collections(
    paths: Sequence[str | Path],
    config: ScoreConfig | None = None,
    *,
    encoder: Any = None,
) -> list[EciSummary]:
    """ECI of each collection with ``encoder`` (an :class:`~trueneg.models.Encoder`; default
    all-MiniLM-L6-v2). Collections that share their passage and query tables (a collection and
    its fixed versions) are embedded once."""
    from trueneg.models import Encoder, EncoderConfig

    enc = encoder or Encoder(EncoderConfig())
    out = []
    done: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for p in paths:
        coll = Collection.load(p)
        key = _tables_key(coll)
        if key not in done:
            done[key] = enc.encode_collection(coll)
        qe, pe = done[key]
        out.append(eci_of(coll, qe, pe, config)[0])
    return out


def _tables_key(coll: Collection) -> tuple[int, int]:
    """Identity of the passage and query tables by content (a fixed copy shares its source's)."""
    import hashlib

    h = []
    for name in ("passages", "queries"):
        f = coll.path / f"{name}.parquet"
        d = hashlib.sha256()
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                d.update(chunk)
        h.append(int.from_bytes(d.digest()[:8], "little"))
    return h[0], h[1]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with fewer than 3 pairs or
    a constant side."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    for u in np.unique(v):
        m = v == u
        if m.sum() > 1:
            r[m] = r[m].mean()
    return r
