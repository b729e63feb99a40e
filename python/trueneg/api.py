"""The stage API: one shape for every stage, for notebooks and scripts.

Each stage is ``stage(collection, config=None, *, out=..., engine=None, **overrides) -> Result``:
``collection`` a :class:`~trueneg.Collection` or its folder, ``config`` the stage's settings
dataclass (the same one the CLI options and the TOML tables are read into, checked the same way),
``overrides`` any of its fields (``trueneg.mine(c, out="m", num_negatives=5)``), and the
:class:`Result` holds the new collection and the stage's report. Defaults are the CLI's.

Example::

    >>> import trueneg
    >>> from trueneg.data import rlhn_sample_stage1
    >>> c = trueneg.ingest(rlhn_sample_stage1(), "rlhn")  # doctest: +SKIP
    >>> d = trueneg.dedup(c, out="rlhn-dedup", action="drop")  # doctest: +SKIP
    >>> j = trueneg.judge(d.collection, offline=True)  # doctest: +SKIP
    >>> f = trueneg.fix(j.collection, out="rlhn-relabel", strategy="relabel")  # doctest: +SKIP
    >>> f.report.false_negatives, len(f.collection)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from trueneg.collection import Collection
from trueneg.engine import Engine, LocalEngine  # noqa: F401  (part of the stage API)
from trueneg.exceptions import InputError

R = TypeVar("R")
C = TypeVar("C")
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Result(Generic[R]):
    """What a stage made: the new (or, for ``judge``, the judged) collection, and its report."""

    collection: Collection | None
    report: R


def _load(collection: Collection | PathLike) -> Collection:
    return collection if isinstance(collection, Collection) else Collection.load(collection)


def _settings(cls: type[C], config: C | None, overrides: dict[str, Any], stage: str) -> C:
    """``config`` (or the defaults) with ``overrides`` applied, checked by the dataclass."""
    base = config if config is not None else cls()
    if not isinstance(base, cls):
        raise InputError(f"{stage}: config must be a {cls.__name__}, got {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        from trueneg.config import nearest

        m = nearest(unknown[0], names)
        hint = f" (did you mean {m!r}?)" if m else ""
        raise InputError(f"{stage}: unknown setting {unknown[0]!r}{hint}")
    return dataclasses.replace(base, **overrides) if overrides else base  # type: ignore[type-var]


def dedup(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike | None = None,
    action: Literal["report", "drop", "merge"] = "report",
    against: Sequence[PathLike] = (),
    overwrite: bool = False,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[Any]:
    """Exact and near-duplicate queries and passages, leakage into ``against`` BEIR sets, and free
    false negatives (a negative that duplicates one of its query's positives); with ``out``, a new
    collection with ``action`` applied and the free false negatives as judgments.

    Example::

        >>> r = trueneg.dedup("rlhn", out="rlhn-dedup", threshold=0.8)  # doctest: +SKIP
        >>> r.report.free_false_negatives  # doctest: +SKIP
        1
    """
    from trueneg.dedup import DedupConfig, dedup_collection

    cfg = _settings(DedupConfig, config, overrides, "dedup")
    rep = dedup_collection(
        _load(collection),
        cfg,
        against=[Path(a) for a in against],
        action=action,
        out=None if out is None else Path(out),
        overwrite=overwrite,
    )
    return Result(Collection.load(out) if out is not None else None, rep)


def mine(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike,
    encoder: Any = None,
    query_embeddings: Any = None,
    passage_embeddings: Any = None,
    overwrite: bool = False,
    engine: Engine | None = None,
    work_dir: PathLike | None = None,
    **overrides: Any,
) -> Result[dict[str, Any]]:
    """New hard negatives for every example (sentence-transformers' conventions, every positive
    of the query masked, the relative margin 0.05 by default), embedded with ``encoder`` (an
    :class:`~trueneg.models.EncoderConfig`; default all-MiniLM-L6-v2) unless embeddings are given.
    Mined in blocks under ``memory_limit`` (a :class:`~trueneg.mine.MineConfig` field); with
    ``work_dir`` each block is saved there and a rerun resumes from the saved blocks.

    Example::

        >>> r = trueneg.mine("rlhn", out="rlhn-mined", num_negatives=7)  # doctest: +SKIP
        >>> r.report["short_examples"]  # doctest: +SKIP
        0
    """
    from trueneg.mine import MineConfig, mine_collection
    from trueneg.models import Encoder, EncoderConfig

    cfg = _settings(MineConfig, config, overrides, "mine")
    coll = _load(collection)
    if (query_embeddings is None) != (passage_embeddings is None):
        raise InputError("give both query_embeddings and passage_embeddings, or neither")
    if query_embeddings is None:
        enc = Encoder(encoder if encoder is not None else EncoderConfig())
        query_embeddings, passage_embeddings = enc.encode_collection(coll, engine=engine)
    rep = mine_collection(
        coll.path,
        Path(out),
        query_embeddings,
        passage_embeddings,
        keep_old=cfg.keep_old,
        overwrite=overwrite,
        engine=engine,
        work_dir=work_dir,
        memory_limit=cfg.memory_limit,
        **cfg.selection(),
    )
    return Result(Collection.load(out), rep)


def judge(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    cache: PathLike | None = None,
    offline: bool = False,
    dry_run: bool = False,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[Any]:
    """The judge cascade (RLHN's by default) over the collection, in place: its judgments and
    summary are written into it; answers come from and go to the cache (``cache``, default in
    the collection), so a rerun pays nothing. ``offline`` judges from the cache only.

    Example::

        >>> r = trueneg.judge("rlhn", base_url="http://localhost:8000/v1", budget_usd=5.0)  # doctest: +SKIP
        >>> r.report.false_negatives  # doctest: +SKIP
    """
    from trueneg.judge import judge_collection
    from trueneg.judge.config import JudgeConfig

    cfg = _settings(JudgeConfig, config, overrides, "judge")
    coll = _load(collection)
    rep = judge_collection(
        coll.path,
        cfg,
        cache_path=None if cache is None else Path(cache),
        dry_run=dry_run,
        offline=offline,
        engine=engine,
    )
    return Result(Collection.load(coll.path), rep)


def fix(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike,
    strategy: Literal["remove", "remove-hn", "relabel"] = "relabel",
    overwrite: bool = False,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[Any]:
    """Apply dedup's and the judge's false negatives with one ``strategy`` (RLHN's best:
    relabel) and write the fixed collection to ``out``; settings (``max_false_negatives``,
    ``exempt``) from a :class:`~trueneg.fix.FixConfig`.

    Example::

        >>> r = trueneg.fix("rlhn", out="rlhn-relabel", strategy="relabel")  # doctest: +SKIP
        >>> r.report.moved_to_positives  # doctest: +SKIP
        76
    """
    from trueneg.fix import FixConfig, fix_collection

    cfg = _settings(FixConfig, config, {"strategies": (strategy,), **overrides}, "fix")
    coll = _load(collection)
    rep = fix_collection(
        coll.path,
        Path(out),
        strategy,
        max_false_negatives=cfg.max_false_negatives,
        exempt=cfg.exempt,
        overwrite=overwrite,
    )
    return Result(Collection.load(out), rep)


def generate(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike,
    cache: PathLike | None = None,
    dry_run: bool = False,
    offline: bool = False,
    overwrite: bool = False,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[Any]:
    """Generated hard negatives (SyNeg): an LLM writes hard negatives per example, they are
    checked (length, near-duplicates, optionally a judge) and mixed in (``mix_ratio``) and
    refill short examples (``refill_to``); settings of a :class:`~trueneg.generate.GenerateConfig`.
    With ``dry_run`` nothing is sent or written (the report has the calls and their cost).

    Example::

        >>> r = trueneg.generate("rlhn-remove-hn", out="rlhn-syneg", model="gpt-4o-mini")  # doctest: +SKIP
        >>> r.report.refilled  # doctest: +SKIP
        112
    """
    from trueneg.generate import GenerateConfig, generate_collection

    cfg = _settings(GenerateConfig, config, overrides, "generate")
    coll = _load(collection)
    rep = generate_collection(
        coll.path,
        Path(out),
        cfg,
        cache_path=Path(cache) if cache is not None else None,
        dry_run=dry_run,
        offline=offline,
        overwrite=overwrite,
    )
    return Result(coll if dry_run else Collection.load(out), rep)


def score_negatives(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    encoder: Any = None,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[Any]:
    """The ECI of the collection's hard negatives (:mod:`trueneg.score`): information capacity
    times the harmonic mean of hardness and safety, from a frozen encoder (default
    all-MiniLM-L6-v2); settings of a :class:`~trueneg.score.ScoreConfig`. Nothing is written.

    Example::

        >>> r = trueneg.score_negatives("rlhn-relabel")  # doctest: +SKIP
        >>> round(r.report.eci, 3), r.report.unsafe_share  # doctest: +SKIP
    """
    from trueneg.score import ScoreConfig, score_collections

    cfg = _settings(ScoreConfig, config, overrides, "score_negatives")
    coll = _load(collection)
    return Result(coll, score_collections([coll.path], cfg, encoder=encoder)[0])


def train_retriever(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike,
    overwrite: bool = False,
    resume: bool = True,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[dict[str, Any]]:
    """Train a bi-encoder on the collection (contrastive, its hard negatives and in-batch ones,
    every known positive of a query masked); a sentence-transformers folder at ``out``. Schedule
    settings go in ``schedule=Schedule(...)`` (``max_steps``, ``batch_size``, ``lr``, ...).

    Example::

        >>> from trueneg.train import Schedule
        >>> r = trueneg.train_retriever("rlhn-relabel", out="model", schedule=Schedule(max_steps=10))  # doctest: +SKIP
        >>> r.report["steps"]  # doctest: +SKIP
        10
    """
    from trueneg.train.retriever import RetrieverConfig
    from trueneg.train.retriever import train_retriever as _train

    cfg = _settings(RetrieverConfig, config, overrides, "train_retriever")
    coll = _load(collection)
    rep = _train(coll.path, Path(out), cfg, overwrite=overwrite, resume=resume)
    return Result(coll, rep)


def train_reranker(
    collection: Collection | PathLike,
    config: Any = None,
    *,
    out: PathLike,
    overwrite: bool = False,
    resume: bool = True,
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[dict[str, Any]]:
    """Fine-tune a cross-encoder on the collection's groups (listwise by default); the folder at
    ``out`` loads in sentence-transformers' ``CrossEncoder``.

    Example::

        >>> r = trueneg.train_reranker("rlhn-relabel", out="reranker")  # doctest: +SKIP
    """
    from trueneg.train.reranker import RerankerConfig
    from trueneg.train.reranker import train_reranker as _train

    cfg = _settings(RerankerConfig, config, overrides, "train_reranker")
    coll = _load(collection)
    rep = _train(coll.path, Path(out), cfg, overwrite=overwrite, resume=resume)
    return Result(coll, rep)


def evaluate(
    datasets: PathLike | Sequence[PathLike],
    config: Any = None,
    *,
    split: str = "test",
    engine: Engine | None = None,
    **overrides: Any,
) -> Result[dict[str, Any]]:
    """nDCG@10, Recall@100 and MRR@10 of an encoder (an :class:`~trueneg.models.EncoderConfig`,
    e.g. ``model="model"``; fp32 by default, the reference numbers) on BEIR folders.

    Example::

        >>> r = trueneg.evaluate("beir/scifact", model="model")  # doctest: +SKIP
        >>> r.report["average"]["nDCG@10"]  # doctest: +SKIP
    """
    from trueneg.evaluate import evaluate_beir
    from trueneg.models import Encoder, EncoderConfig

    base = config if config is not None else EncoderConfig(dtype="fp32")
    cfg = _settings(EncoderConfig, base, overrides, "evaluate")
    sets = [datasets] if isinstance(datasets, str | os.PathLike) else list(datasets)
    rep = evaluate_beir([Path(s) for s in sets], Encoder(cfg), split=split)
    return Result(None, rep)


def report(
    collection: Collection | PathLike,
    *,
    out: PathLike,
    fixed: Sequence[Collection | PathLike] = (),
    experiments: Sequence[PathLike] = (),
    engine: Engine | None = None,
) -> Result[Path]:
    """The self-contained HTML (and Markdown) report of a judged collection and its fixes.

    Example::

        >>> r = trueneg.report("rlhn", out="report", fixed=["rlhn-relabel"])  # doctest: +SKIP
        >>> r.report  # doctest: +SKIP
        PosixPath('report/report.html')
    """
    from trueneg._io import check_output
    from trueneg.report import ReportData, load_json, write_report

    coll = _load(collection)
    fixed_paths = [_load(f).path for f in fixed]
    check_output(out, [coll.path, *fixed_paths, *experiments])
    exps = []
    for e in experiments:
        r = load_json(Path(e))
        if r is None:
            raise InputError("experiment result not found", path=str(e))
        exps += list(r["datasets"].values()) if "datasets" in r else [r]
    data = ReportData(
        title="trueneg report",
        collection=coll,
        judge_summary=load_json(coll.path / "judge-summary.json"),
        dedup=load_json(coll.path / "dedup.json"),
        fixes=[x for x in (load_json(p / "fix.json") for p in fixed_paths) if x],
        experiments=exps,
    )
    return Result(coll, write_report(data, Path(out)))
