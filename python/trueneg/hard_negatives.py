"""``trueneg.mine_hard_negatives``: sentence-transformers' ``util.mine_hard_negatives``, parameter for
parameter (v6), with the same defaults, candidate rules, row-dropping rules and output columns, on
trueneg's exact Rust search; plus what it does not have: near duplicates of a positive kept out
(``exclude_near_duplicates``) and a report of how many candidates each rule skipped and how many rows
fell short (``return_report``).

What matches sentence-transformers, step by step (its ``hard_negatives.py`` as of 6.3): the corpus is
the given one plus every positive, de-duplicated by text; queries are de-duplicated by text and
every positive of a query (over all its rows) is masked; ``range_max`` is derived the same way;
candidates are the top ``range_max + max_positives + 1`` by the model's similarity on normalised
embeddings (padded with -inf when the corpus is smaller), the query's own text excluded when the
corpus holds it; a cross-encoder rescores them only when a
margin or a score bound is set; the margins use the query's lowest positive score (the relative one
sign-safe); then the top ``range_max``, the first ``range_min`` skipped, the top ``num_negatives`` or
``random.sample`` from Python's global generator (so ``random.seed`` gives both the same sample);
the four output formats drop and explode rows exactly as it does. Differences: ties are broken by
the lower corpus index (torch.topk leaves them unspecified), and a ``model`` given as a path (not a
``SentenceTransformer``) is embedded by :class:`trueneg.models.Encoder` (bf16 on CPUs with
AVX512-BF16/AMX unless ``dtype="fp32"``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trueneg.exceptions import InputError

if TYPE_CHECKING:
    from trueneg.judge.config import JudgeConfig

logger = logging.getLogger(__name__)

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
NEG_INF = np.float32(-np.inf)


@dataclass
class MiningReport:
    """What the rules did: candidates seen and skipped per rule (the ratios sentence-transformers
    prints), and the rows a format could not fill (``shortfall``), overall and per query."""

    queries: int
    corpus: int
    range_max: int
    candidates: int
    skipped: dict[str, int] = field(default_factory=dict)
    skip_rate: dict[str, float] = field(default_factory=dict)
    #: rows the output format could hold vs. rows written
    possible_rows: int = 0
    rows: int = 0
    #: per query: negatives found (of ``num_negatives``)
    negatives_found: list[int] = field(default_factory=list)
    #: queries with fewer than ``num_negatives`` negatives
    short_queries: int = 0
    near_duplicates_excluded: int = 0
    #: with ``judge=``: (query, candidate) pairs the judge saw, the false negatives it found
    #: (removed, or with ``judge_action="relabel"`` made positives), and what it cost
    judged_pairs: int = 0
    false_negatives: int = 0
    judge_cost_usd: float = 0.0

    @property
    def shortfall(self) -> int:
        return max(0, self.possible_rows - self.rows)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shortfall"] = self.shortfall
        return d


def mine_hard_negatives(
    dataset: Any,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: OutputFormat = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool = False,
    use_multi_process: list[str] | bool = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    exclude_near_duplicates: bool | float = False,
    judge: JudgeConfig | str | os.PathLike[str] | None = None,
    judge_action: Literal["remove", "relabel"] = "remove",
    judge_pool: int | None = None,
    judge_cache: str | os.PathLike[str] | None = None,
    dtype: str = "auto",
    return_report: bool = False,
) -> Any:
    """Add hard negatives to a ``datasets.Dataset`` of (anchor, positive) pairs: a drop-in for
    ``sentence_transformers.util.mine_hard_negatives`` (same parameters, defaults and output).

    ``model`` is a ``SentenceTransformer`` (embedded with its own ``encode_query`` /
    ``encode_document``) or a model folder (embedded by trueneg's encoder, ``dtype`` "auto" =
    bf16 where the CPU has it, "fp32" for exact fp32). ``use_faiss`` and ``faiss_batch_size`` are
    accepted and ignored: the search is trueneg's exact kernel (faster than faiss ``IndexFlatIP``).
    ``use_multi_process`` is passed to a ``SentenceTransformer``'s encoder.

    Keyword-only extras: ``exclude_near_duplicates`` (True, or a Jaccard threshold; True = 0.8)
    keeps out of the negatives every passage that dedup's MinHash finds a near duplicate of one of
    the query's positives; ``return_report=True`` returns ``(dataset, MiningReport)``.

    ``judge`` (a :class:`~trueneg.judge.JudgeConfig` or the path of a judge TOML) asks the judge
    about each query's first ``judge_pool`` candidates (default ``2 * num_negatives``: the
    negatives plus as many in reserve) and fills the rows from the ones it did not flag, in
    order; ``judge_action="relabel"`` also makes each false negative one more positive of its
    query (one more row in the triplet / n-tuple formats, label 1 in the labeled ones). Answers
    are cached in ``judge_cache`` (default ``$TRUENEG_CACHE_DIR`` or ``~/.cache/trueneg``,
    ``judge-cache.sqlite``): a second call pays nothing.

    Example::

        >>> from datasets import Dataset
        >>> import trueneg
        >>> pairs = Dataset.from_dict({"query": ["what is a cat", "what is a dog"],
        ...                            "answer": ["A cat is a small feline.", "A dog is a canine."]})
        >>> out = trueneg.mine_hard_negatives(pairs, trueneg.models.default_model_path(),
        ...                                   num_negatives=1, verbose=False)
        >>> out.column_names
        ['query', 'answer', 'negative']
    """
    try:
        from datasets import Dataset
    except ImportError:
        raise InputError(
            "mine_hard_negatives needs the datasets package: pip install 'trueneg[hf]'"
        ) from None

    if len(dataset) == 0:
        raise InputError("The dataset is empty. Please provide a non-empty dataset.")
    if faiss_batch_size <= 0:
        raise InputError(f"faiss_batch_size must be a positive integer, got {faiss_batch_size}.")
    columns = dataset.column_names
    if not anchor_column_name or anchor_column_name not in columns:
        anchor_column_name = columns[0]
    if not positive_column_name or positive_column_name not in columns:
        if len(columns) < 2:
            raise InputError(
                "Dataset must contain at least two columns to select the positive column automatically."
            )
        positive_column_name = columns[1]
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("as_triplets is deprecated: use output_format=%r", output_format)
    if include_positives:
        if (
            range_min != 0
            or range_max is not None
            or max_score is not None
            or min_score is not None
            or absolute_margin is not None
            or relative_margin is not None
            or margin is not None
            or sampling_strategy != "top"
        ):
            logger.warning(
                "with include_positives=True, non-default range_min, range_max, max_score, "
                "min_score, margins or sampling_strategy may still discard the positives"
            )
        if output_format != "n-tuple":
            logger.warning('with include_positives=True, output_format is set to "n-tuple"')
            output_format = "n-tuple"
    if output_format == "n-tuple-scores":  # type: ignore[comparison-overlap]
        output_format, output_scores = "n-tuple", True
    if output_format not in ("triplet", "n-tuple", "labeled-pair", "labeled-list"):
        raise InputError(
            f"Invalid output_format: {output_format}. Must be one of 'triplet', 'n-tuple', "
            "'labeled-pair', or 'labeled-list'."
        )
    if sampling_strategy not in ("top", "random"):
        raise InputError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}")
    if margin is not None:
        absolute_margin = margin
        logger.warning("margin is deprecated: absolute_margin set to %s", margin)
    if judge_action not in ("remove", "relabel"):
        raise InputError(f"judge_action must be 'remove' or 'relabel', got {judge_action!r}")
    if judge_pool is not None and judge_pool < num_negatives:
        raise InputError(
            f"judge_pool must be at least num_negatives ({num_negatives}), got {judge_pool}"
        )
    judge_config = _judge_config(judge) if judge is not None else None

    # a slice of the column converts it in one batch (datasets >= 4: iterating a Column decodes
    # row by row, 20x slower; before 4 the column is already a list)
    anchors = list(dataset[anchor_column_name][:])
    positives = list(dataset[positive_column_name][:])
    # sentence-transformers counts rows per anchor (pandas groupby count): repeated pairs count
    per_anchor = Counter(anchors)
    positives_per_query = list(per_anchor.values())
    max_positives = max(positives_per_query)
    if num_negatives < 1:
        raise InputError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")
    if range_max is None:
        if (
            absolute_margin is not None
            or relative_margin is not None
            or max_score is not None
            or (cross_encoder is not None and min_score is not None)
        ):
            range_max = range_min + num_negatives * 10 + max_positives
        else:
            range_max = range_min + num_negatives + max_positives
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    if range_min < 0:
        raise InputError(f"range_min must be non-negative, got range_min={range_min}.")
    if range_min >= range_max:
        raise InputError(
            "range_min must be smaller than range_max, "
            f"got range_min={range_min} and range_max={range_max}."
        )
    if num_negatives > range_max - range_min:
        raise InputError(
            f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} "
            f"candidates remain after skipping the first range_min={range_min} of "
            f"range_max={range_max}. Consider decreasing num_negatives or range_min, or "
            "increasing range_max."
        )

    texts = list(dict.fromkeys((corpus if corpus is not None else positives) + positives))
    corpus_idx = {t: i for i, t in enumerate(texts)}
    queries = list(dict.fromkeys(anchors))
    queries_idx = {q: i for i, q in enumerate(queries)}
    n_queries = len(queries)
    if n_queries != len(anchors) and verbose:
        print(f"Found {n_queries} unique queries out of {len(anchors)} total queries.")
    if max_positives > 1 and verbose:
        print(f"Found an average of {np.mean(positives_per_query):.3f} positives per query.")

    qe, ce = _embed(
        model,
        queries,
        texts,
        batch_size=batch_size,
        query_prompt=query_prompt,
        query_prompt_name=query_prompt_name,
        corpus_prompt=corpus_prompt,
        corpus_prompt_name=corpus_prompt_name,
        use_multi_process=use_multi_process,
        cache_folder=cache_folder,
        dtype=dtype,
        verbose=verbose,
    )

    from trueneg.mine import exact_topk

    # sentence-transformers >= 6.3: one extra candidate, for the query's own text in the corpus
    width = range_max + max_positives + 1
    k = min(width, len(texts))
    indices, scores = exact_topk(qe, ce, k)
    indices = indices.astype(np.int64)
    scores = scores.astype(np.float32)
    if k < width:
        pad = width - k
        scores = np.concatenate([scores, np.full((n_queries, pad), NEG_INF, np.float32)], axis=1)
        indices = np.concatenate([indices, np.full((n_queries, pad), -1, np.int64)], axis=1)

    # a query's own text in the corpus is never its negative (unless it is its own positive)
    query_in_corpus = np.asarray([corpus_idx.get(q, -1) for q in queries], np.int64)
    positive_indices: list[list[int]] = [[] for _ in range(n_queries)]
    for a, p in zip(anchors, positives, strict=True):
        lst = positive_indices[queries_idx[a]]
        if corpus_idx[p] not in lst:
            lst.append(corpus_idx[p])
        if include_positives and a == p:
            query_in_corpus[queries_idx[a]] = -1
    n_positives = [len(p) for p in positive_indices]
    pos_queries = [queries[q] for q in range(n_queries) for _ in range(n_positives[q])]
    pos_texts = [texts[d] for q in range(n_queries) for d in positive_indices[q]]
    pos_rows = np.repeat(np.arange(n_queries), n_positives)
    pos_flat = np.asarray([d for p in positive_indices for d in p], np.int64)
    positive_scores = np.einsum("ij,ij->i", qe[pos_rows], ce[pos_flat]).astype(np.float32)

    if cross_encoder is not None and (
        absolute_margin is not None
        or relative_margin is not None
        or max_score is not None
        or min_score is not None
    ):
        scores, positive_scores = _rescore(
            cross_encoder, queries, texts, indices, pos_queries, pos_texts, batch_size
        )
    scores[indices == -1] = NEG_INF
    scores[(indices == query_in_corpus[:, None]) & (query_in_corpus[:, None] >= 0)] = NEG_INF

    report = MiningReport(
        queries=n_queries, corpus=len(texts), range_max=range_max, candidates=int(scores.size)
    )
    if not include_positives:
        # (query, passage) pairs as one int64 key each: a candidate is a positive of its query
        stride = len(texts) + 1
        keys = np.arange(n_queries, dtype=np.int64)[:, None] * stride + (indices + 1)
        mask = np.isin(keys, pos_rows.astype(np.int64) * stride + (pos_flat + 1))
        if exclude_near_duplicates:
            near = _near_duplicate_mask(texts, indices, positive_indices, exclude_near_duplicates)
            report.near_duplicates_excluded = int((near & ~mask & (indices >= 0)).sum())
            mask |= near
        scores[mask] = NEG_INF

    num_candidates = scores.size

    def skip(name: str, removed: np.ndarray, *, count_down: bool) -> None:
        nonlocal num_candidates
        n = int(removed.sum())
        scores[removed] = NEG_INF
        if n:
            report.skipped[name] = n
            report.skip_rate[name] = n / num_candidates
            if count_down:
                num_candidates -= n

    if absolute_margin is not None or relative_margin is not None:
        starts = np.concatenate([[0], np.cumsum(n_positives)[:-1]]).astype(np.int64)
        lowest = (
            np.minimum.reduceat(positive_scores, starts)
            if len(positive_scores)
            else positive_scores
        )
        if absolute_margin is not None:
            skip("absolute_margin", scores + absolute_margin > lowest[:, None], count_down=True)
        if relative_margin is not None:
            bound = lowest - np.abs(lowest) * relative_margin
            skip("relative_margin", scores > bound[:, None], count_down=True)
    if max_score is not None:
        skip("max_score", scores > max_score, count_down=False)
    if min_score is not None:
        skip("min_score", (scores < min_score) & (scores != NEG_INF), count_down=False)

    # top range_max of what is left (ties: the earlier candidate, i.e. the lower corpus index)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :range_max]
    rows = np.arange(n_queries)[:, None]
    indices = indices[rows, order]
    negative_scores = scores[rows, order]
    if range_min:
        indices, negative_scores = indices[:, range_min:], negative_scores[:, range_min:]
    take = num_negatives
    if judge_config is not None:
        take = min(indices.shape[1], judge_pool or 2 * num_negatives)
    if sampling_strategy == "top":
        indices, negative_scores = indices[:, :take], negative_scores[:, :take]
    else:
        options = indices.shape[1] - np.isinf(negative_scores).sum(1)
        options = np.maximum(options, take)
        picked = np.asarray([random.sample(range(int(o)), k=take) for o in options])
        indices, negative_scores = indices[rows, picked], negative_scores[rows, picked]
        resort = np.argsort(-negative_scores, axis=1, kind="stable")
        indices, negative_scores = indices[rows, resort], negative_scores[rows, resort]
    if judge_config is not None:
        flagged, cost = _judge_candidates(
            judge_config, judge_cache, queries, texts, positive_indices, indices, negative_scores
        )
        report.judged_pairs = int((negative_scores != NEG_INF).sum())
        report.false_negatives, report.judge_cost_usd = int(flagged.sum()), cost
        if judge_action == "relabel" and flagged.any():
            added = {}
            for q, j in zip(*np.nonzero(flagged), strict=True):
                positive_indices[q].append(int(indices[q, j]))
                added[(int(q), int(indices[q, j]))] = float(negative_scores[q, j])
            old = {
                (int(q), int(d)): float(sc)
                for q, d, sc in zip(pos_rows, pos_flat, positive_scores, strict=True)
            }
            old.update(added)
            n_positives = [len(p) for p in positive_indices]
            pos_queries = [queries[q] for q in range(n_queries) for _ in range(n_positives[q])]
            pos_texts = [texts[d] for q in range(n_queries) for d in positive_indices[q]]
            positive_scores = np.asarray(
                [old[(q, d)] for q in range(n_queries) for d in positive_indices[q]], np.float32
            )
        negative_scores = np.where(flagged, NEG_INF, negative_scores)
        keep = np.argsort(-negative_scores, axis=1, kind="stable")[:, :num_negatives]
        indices, negative_scores = indices[rows, keep], negative_scores[rows, keep]
    found = (negative_scores != NEG_INF).sum(1)
    report.negatives_found = found.tolist()
    report.short_queries = int((found < num_negatives).sum())
    if verbose:
        print("Negative candidates mined, preparing dataset...")

    data, neg_all, diff, report.possible_rows = _format(
        output_format,
        output_scores,
        anchor_column_name,
        positive_column_name,
        queries,
        texts,
        indices,
        negative_scores,
        positive_indices,
        positive_scores,
        pos_queries,
        pos_texts,
        n_positives,
        num_negatives,
        len(dataset),
    )
    out = Dataset.from_dict(data)
    report.rows = len(out)
    if verbose:
        _print_stats(
            positive_scores,
            neg_all,
            diff,
            report,
            {
                "absolute_margin": absolute_margin,
                "relative_margin": relative_margin,
                "max_score": max_score,
                "min_score": min_score,
            },
        )
    return (out, report) if return_report else out


def _embed(
    model: Any,
    queries: list[str],
    corpus: list[str],
    *,
    batch_size: int,
    query_prompt: str | None,
    query_prompt_name: str | None,
    corpus_prompt: str | None,
    corpus_prompt_name: str | None,
    use_multi_process: Any,
    cache_folder: str | None,
    dtype: str,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised query and corpus embeddings (float32), cached in ``cache_folder``."""
    name = _model_name(model)
    files: tuple[Path, Path] | None = None
    if cache_folder:
        os.makedirs(cache_folder, exist_ok=True)
        qh = hashlib.sha256(repr((name, query_prompt, query_prompt_name, dtype, queries)).encode())
        ch = hashlib.sha256(repr((name, corpus_prompt, corpus_prompt_name, dtype, corpus)).encode())
        files = (
            Path(cache_folder) / f"query_embeddings_{qh.hexdigest()}.npy",
            Path(cache_folder) / f"corpus_embeddings_{ch.hexdigest()}.npy",
        )
        if files[0].is_file() and files[1].is_file():
            if verbose:
                print(f"[Cache] Loaded embeddings from {cache_folder}")
            return np.load(files[0]), np.load(files[1])
    if _is_sentence_transformer(model):
        pool = None
        if use_multi_process:
            pool = model.start_multi_process_pool(
                target_devices=None if isinstance(use_multi_process, bool) else use_multi_process
            )
        try:
            kw = {"pool": pool, "batch_size": batch_size, "normalize_embeddings": True,
                  "convert_to_numpy": True, "show_progress_bar": verbose}  # fmt: skip
            ce = model.encode_document(
                corpus, prompt_name=corpus_prompt_name, prompt=corpus_prompt, **kw
            )
            qe = model.encode_query(
                queries, prompt_name=query_prompt_name, prompt=query_prompt, **kw
            )
        finally:
            if pool is not None:
                model.stop_multi_process_pool(pool)
    else:
        from trueneg.models import Encoder, EncoderConfig

        path = Path(str(model))
        qp = query_prompt if query_prompt is not None else _named_prompt(path, query_prompt_name)
        cp = corpus_prompt if corpus_prompt is not None else _named_prompt(path, corpus_prompt_name)
        enc = Encoder(
            EncoderConfig(
                model=str(path),
                query_prefix=qp,
                passage_prefix=cp,
                batch_size=batch_size,
                dtype=dtype,
            )
        )
        ce = enc.encode(corpus, "passage", desc="embed corpus")
        qe = enc.encode(queries, "query", desc="embed queries")
    qe = np.ascontiguousarray(qe, np.float32)
    ce = np.ascontiguousarray(ce, np.float32)
    if files is not None:
        np.save(files[0], qe)
        np.save(files[1], ce)
    return qe, ce


def _is_sentence_transformer(model: Any) -> bool:
    return hasattr(model, "encode_query") and hasattr(model, "encode_document")


def _model_name(model: Any) -> str:
    if _is_sentence_transformer(model):
        card = getattr(model, "model_card_data", None)
        return str(getattr(card, "base_model", "") or type(model).__name__)
    return str(Path(str(model)).resolve())


def _named_prompt(path: Path, name: str | None) -> str:
    """A prompt by name from a sentence-transformers folder's ``config_sentence_transformers.json``."""
    if name is None:
        return ""
    import json

    f = path / "config_sentence_transformers.json"
    prompts = json.loads(f.read_text()).get("prompts", {}) if f.is_file() else {}
    if name not in prompts:
        raise InputError(f"prompt name {name!r} not in the model's prompts ({sorted(prompts)})")
    return str(prompts[name])


def _rescore(
    cross_encoder: Any,
    queries: list[str],
    texts: list[str],
    indices: np.ndarray,
    pos_queries: list[str],
    pos_texts: list[str],
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate and positive scores from a cross-encoder (a sentence-transformers CrossEncoder, or
    a folder scored by :class:`trueneg.train.Reranker`)."""
    if hasattr(cross_encoder, "predict"):

        def score(qs: list[str], ps: list[str]) -> np.ndarray:
            return np.asarray(
                cross_encoder.predict(list(zip(qs, ps, strict=True)), batch_size=batch_size),
                np.float32,
            )
    else:
        from trueneg.models import Reranker

        rr = Reranker(str(cross_encoder))

        def score(qs: list[str], ps: list[str]) -> np.ndarray:
            return np.asarray(rr.score(qs, ps), np.float32)

    qs = [queries[q] for q in range(len(queries)) for _ in range(indices.shape[1])]
    ps = [
        texts[i] for i in indices.ravel().tolist()
    ]  # -1 (padding) reads the last text; masked after
    scores = score(qs, ps).reshape(indices.shape)
    return scores, score(pos_queries, pos_texts)


def _near_duplicate_mask(
    texts: list[str],
    indices: np.ndarray,
    positive_indices: list[list[int]],
    threshold: bool | float,
) -> np.ndarray:
    """Candidates that dedup's MinHash LSH puts in one cluster with a positive of their query."""
    import pyarrow as pa

    from trueneg.dedup import DedupConfig, find_duplicates

    t = 0.8 if threshold is True else float(threshold)
    d = find_duplicates(pa.array(texts, pa.string()), DedupConfig(threshold=t), kind="passage")
    root = d.root
    out = np.zeros(indices.shape, bool)
    for q, pos in enumerate(positive_indices):
        valid = indices[q] >= 0
        roots = root[np.where(valid, indices[q], 0)]
        out[q] = valid & np.isin(roots, root[pos])
    return out


def _format(
    output_format: str,
    output_scores: bool,
    anchor: str,
    positive: str,
    queries: list[str],
    texts: list[str],
    indices: np.ndarray,
    negative_scores: np.ndarray,
    positive_indices: list[list[int]],
    positive_scores: np.ndarray,
    pos_queries: list[str],
    pos_texts: list[str],
    n_positives: list[int],
    num_negatives: int,
    n_rows: int,
) -> tuple[dict[str, list[Any]], np.ndarray, np.ndarray, int]:
    """The output columns (sentence-transformers' layout and row rules), the negative scores and
    positive-minus-negative differences it reports, and the rows the format could hold."""
    reps = np.asarray(n_positives)
    # one row per (query, positive), negatives repeated
    ind = np.repeat(indices, reps, axis=0)
    neg = np.repeat(negative_scores, reps, axis=0)
    keep = neg != NEG_INF
    pos_rep = np.repeat(positive_scores[:, None], num_negatives, axis=1)
    data: dict[str, list[Any]]
    if output_format == "triplet":
        row = np.repeat(np.arange(len(pos_queries))[:, None], num_negatives, axis=1)[keep]
        negs = ind[keep]
        data = {anchor: [pos_queries[r] for r in row.tolist()],
                positive: [pos_texts[r] for r in row.tolist()],
                "negative": [texts[i] for i in negs.tolist()]}  # fmt: skip
        if output_scores:
            data["scores"] = [
                [float(a), float(b)] for a, b in zip(pos_rep[keep], neg[keep], strict=True)
            ]
        return data, neg[keep], pos_rep[keep] - neg[keep], int(keep.size)
    if output_format == "labeled-pair":
        data = {anchor: [], positive: []}
        lab: list[Any] = []
        s = 0
        for q in range(len(queries)):
            for d in positive_indices[q]:
                data[anchor].append(queries[q])
                data[positive].append(texts[d])
                lab.append(float(positive_scores[s]) if output_scores else 1)
                s += 1
            for i, sc in zip(indices[q].tolist(), negative_scores[q].tolist(), strict=True):
                if sc == -np.inf:
                    continue
                data[anchor].append(queries[q])
                data[positive].append(texts[i])
                lab.append(float(sc) if output_scores else 0)
        data["score" if output_scores else "label"] = lab
        return (
            data,
            neg[keep],
            pos_rep[keep] - neg[keep],
            len(queries) * num_negatives + n_rows,
        )
    if output_format == "n-tuple":
        full = keep.all(axis=1)
        data = {anchor: [pos_queries[r] for r in np.flatnonzero(full).tolist()],
                positive: [pos_texts[r] for r in np.flatnonzero(full).tolist()]}  # fmt: skip
        for j in range(num_negatives):
            data[f"negative_{j + 1}"] = [texts[i] for i in ind[full, j].tolist()]
        if output_scores:
            data["scores"] = np.concatenate(
                [positive_scores[full][:, None], neg[full]], axis=1
            ).tolist()
        n = neg[full].ravel()
        return data, n, (pos_rep[full]).ravel() - n, int(full.size)
    # labeled-list
    anyk = keep.any(axis=1)
    rows_ = np.flatnonzero(anyk).tolist()
    data = {
        anchor: [pos_queries[r] for r in rows_],
        positive: [[pos_texts[r]] + [texts[i] for i in ind[r][keep[r]].tolist()] for r in rows_],
    }
    if output_scores:
        data["scores"] = [[float(positive_scores[r]), *neg[r][keep[r]].tolist()] for r in rows_]
    else:
        data["labels"] = [[1] + [0] * int(keep[r].sum()) for r in rows_]
    return data, neg[keep], pos_rep[keep] - neg[keep], int(keep.shape[0])


def _print_stats(
    pos: np.ndarray,
    neg: np.ndarray,
    diff: np.ndarray,
    report: MiningReport,
    settings: dict[str, float | None],
) -> None:
    """The table sentence-transformers prints (torch's conventions: lower median, ddof=1)."""

    def fmt(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) else f"{float(v):.4f}"

    def stat(x: np.ndarray, name: str) -> Any:
        if name == "mean":
            return float(np.mean(x)) if x.size else float("nan")
        if name == "median":
            return float(np.sort(x)[(x.size - 1) // 2]) if x.size else float("nan")
        if name == "std":
            return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
        if name == "min":
            return float(np.min(x)) if x.size else float("inf")
        if name == "max":
            return float(np.max(x)) if x.size else float("-inf")
        q = {"25%": 0.25, "50%": 0.5, "75%": 0.75}[name]
        return float(np.quantile(x, q)) if x.size else float("inf")

    row = "{:<6} {:>14} {:>14} {:>14}"
    print(row.format("Metric", "Positive", "Negative", "Difference"))
    print(row.format("Count", fmt(len(pos)), fmt(len(neg)), ""))
    for m in ("mean", "median", "std", "min", "25%", "50%", "75%", "max"):
        print(row.format(m.capitalize(), fmt(stat(pos, m)), fmt(stat(neg, m)), fmt(stat(diff, m))))
    for name, rate in report.skip_rate.items():
        print(
            f"Skipped {report.skipped[name]:,} potential negatives ({rate:.2%}) due to the "
            f"{name} of {settings.get(name)}."
        )
    if report.shortfall > 0:
        print(
            f"Could not find enough negatives for {report.shortfall} samples "
            f"({report.shortfall / max(1, report.possible_rows):.2%})."
        )
    if report.near_duplicates_excluded:
        print(f"Excluded {report.near_duplicates_excluded:,} near duplicates of positives.")


def _judge_config(judge: Any) -> JudgeConfig:
    from trueneg.judge.config import JudgeConfig

    if isinstance(judge, JudgeConfig):
        return judge
    if isinstance(judge, (str, os.PathLike)):
        return JudgeConfig.from_toml(Path(judge))
    raise InputError(
        f"judge must be a JudgeConfig or the path of a judge TOML, got {type(judge).__name__}"
    )


def default_judge_cache() -> Path:
    """Where ``mine_hard_negatives(judge=...)`` keeps the judge's answers by default."""
    from trueneg._io import cache_root

    return cache_root() / "judge-cache.sqlite"


def _judge_candidates(
    config: JudgeConfig,
    cache: str | os.PathLike[str] | None,
    queries: list[str],
    texts: list[str],
    positive_indices: list[list[int]],
    indices: np.ndarray,
    scores: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Which candidates (``indices``, one row per query; -inf scores are padding) the judge
    flags as false negatives, and the cost of asking. The candidates go through the judge as a
    collection (one example per query with all its positives), so the prompts, the cache keys
    and the flag rules are the judge's own."""
    import tempfile

    from trueneg import judgments
    from trueneg.collection import Collection, CollectionBuilder
    from trueneg.fix import false_negative_pairs
    from trueneg.judge import judge_collection

    cache_path = Path(cache) if cache is not None else default_judge_cache()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    valid = scores != NEG_INF
    with tempfile.TemporaryDirectory(prefix="trueneg-judge-") as tmp:
        folder = Path(tmp) / "candidates"
        with CollectionBuilder(folder, source_format="mine_hard_negatives") as b:
            for q, query in enumerate(queries):
                b.add_example(
                    query=query,
                    subset="mined",
                    positives=[(str(d), None, texts[d], None) for d in positive_indices[q]],
                    negatives=[(str(int(d)), None, texts[d], None) for d in indices[q][valid[q]]],
                    line=q,
                )
        summary = judge_collection(folder, config, cache_path=cache_path)
        coll = Collection.load(folder)
        fn = false_negative_pairs(judgments.load(folder))
        docids = coll.passages["docid"].to_pylist()
        flagged = np.zeros(indices.shape, bool)
        for e, pid in zip(fn["example"].to_pylist(), fn["pid"].to_pylist(), strict=True):
            flagged[e] |= indices[e] == int(docids[pid])
    return flagged & valid, float(summary.cost_usd)
