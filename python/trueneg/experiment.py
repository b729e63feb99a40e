"""``trueneg experiment``: does fixing false negatives make a retriever better? A seeded, paired
comparison on a BEIR-format set that anyone can rerun (RLHN's setting, in miniature).

For each seed:

1. The judged queries (those with a relevant passage) are split into train and test.
2. Each train query keeps only ``labelled_positives`` (K) of its relevant passages as labelled
   positives (a seeded random subset, or its best-graded ones); the rest stay unlabelled, as
   unjudged relevant passages do in MS MARCO-style data. Its negatives are the top
   ``mine_depth`` passages of the model being trained (zero-shot), labelled positives and exact
   text copies of them masked (``trueneg.mine.select_negatives``): the unlabelled relevant ones
   among them are the false negatives.
3. The judge labels the negatives: by default the ``qrels`` judge (the human labels, a perfect
   judge), or any judge config (a local scorer, an LLM cascade), so a judge's effect is measured
   the same way as a perfect judge's. Its flags are scored against the qrels (precision, recall,
   Cohen's kappa).
4. ``trueneg fix`` makes the ``remove``, ``remove-hn`` and ``relabel`` collections; each condition
   is trained with the same recipe and seed and evaluated on the test queries: ``zero-shot``
   (untrained), ``noisy`` (as mined), ``remove``, ``remove-hn``, ``relabel``, and
   ``relabel-matched`` (the relabel collection trained for noisy's number of rows and steps,
   each row's positive drawn from the labelled positive and the relabelled false negatives), so a
   gain cannot be just more steps.

Every (seed, condition) result is stored in the work folder as it is made, so a killed
experiment resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from trueneg._io import atomic_file, remove_own_folder
from trueneg.exceptions import InputError

CONDITIONS = ("zero-shot", "noisy", "remove", "remove-hn", "relabel", "relabel-matched")
#: with a ``generate`` config: the fixed sets with SyNeg's generated negatives mixed in and
#: refilling the examples the fix left short
SYNEG_CONDITIONS = ("remove-hn+syneg", "relabel+syneg")
#: with ``dynamic``: negatives re-mined from the model being trained (trueneg.train.dynamic) over
#: the zero-shot model's frozen index, ``mine_depth`` candidates deep. ``dynamic``: noisy's
#: positives, only positives masked (ADORE as published); ``dynamic-filtered``: relabel's
#: positives, with exact-copy and near-duplicate masking, the judge's cached verdicts and the
#: experiment's judge run in the loop on every new pair (no margin, as the static mining)
DYNAMIC_CONDITIONS = ("dynamic", "dynamic-filtered")
METRICS = ("nDCG@10", "Recall@100", "MRR@10")
#: the collection each trained condition learns from
_SOURCE = {
    "noisy": "noisy",
    "remove": "remove",
    "remove-hn": "remove-hn",
    "relabel": "relabel",
    "relabel-matched": "relabel",
    "remove-hn+syneg": "remove-hn+syneg",
    "relabel+syneg": "relabel+syneg",
    "dynamic": "noisy",
    "dynamic-filtered": "relabel",
}


def _default_recipe() -> Any:
    from trueneg.train._loop import Schedule
    from trueneg.train.retriever import RetrieverConfig

    return RetrieverConfig(
        query_max_length=128,
        passage_max_length=128,
        temperature=0.05,
        group_size=8,
        rows="positive",
        dropout=0.0,
        # no checkpointing: ~7 GB peak at these sizes, and ~30% faster
        schedule=Schedule(
            batch_size=16, lr=2e-5, warmup_ratio=0.1, epochs=1, gradient_checkpointing=False
        ),
    )


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of :func:`run_experiment` (the CLI options and their defaults are these)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    #: share of the judged queries held out for testing
    test_share: float = 0.5
    #: K: relevant passages each train query keeps as labelled positives
    labelled_positives: int = 4
    #: "random" (a seeded random K of the relevant passages) or "best" (the K best graded)
    labelled: str = "random"
    #: negatives are mined from the zero-shot model's top this many (positives masked)
    mine_depth: int = 30
    #: qrels grade at which a passage counts as relevant (positives and the oracle's flags)
    relevance_threshold: int = 1
    conditions: tuple[str, ...] = CONDITIONS
    #: None: the qrels oracle; else a judge config (e.g. a local scorer with local_flags, or an
    #: LLM cascade with its cache under the work folder)
    judge: Any = None
    #: None: no generated negatives; else a GenerateConfig (SyNeg): the remove-hn and relabel
    #: sets get generated negatives (mixed in, refilling short examples) as the conditions
    #: remove-hn+syneg and relabel+syneg, added to the default conditions
    generate: Any = None
    #: add the conditions dynamic and dynamic-filtered (negatives re-mined while training)
    dynamic: bool = False
    #: trueneg fix's k for remove-hn / relabel (drop examples with more false negatives); None: off
    max_false_negatives: int | None = None
    #: at most this many train / test queries (None: all); for quick checks
    max_train_queries: int | None = None
    max_test_queries: int | None = None
    #: the training recipe (a RetrieverConfig; its seed is replaced by each experiment seed)
    recipe: Any = field(default_factory=_default_recipe)
    #: evaluation precision: auto (bf16 where the CPU has it: ~2x faster, nDCG@10 within ~0.002
    #: of fp32, the same for every condition) or fp32 (``trueneg eval beir``'s reference numbers)
    eval_precision: str = "auto"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise InputError("experiment: at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"experiment: seeds repeat: {list(self.seeds)}")
        if not 0 < self.test_share < 1:
            raise InputError(f"experiment: test_share must be in (0, 1), got {self.test_share}")
        if self.labelled_positives < 1:
            raise InputError("experiment: labelled_positives (K) must be at least 1")
        if self.labelled not in ("random", "best"):
            raise InputError(f"experiment: labelled must be random or best, got {self.labelled!r}")
        if self.mine_depth < 1:
            raise InputError("experiment: mine_depth must be at least 1")
        if self.generate is not None and self.conditions == CONDITIONS:
            object.__setattr__(self, "conditions", CONDITIONS + SYNEG_CONDITIONS)
        if self.dynamic and not any(c in DYNAMIC_CONDITIONS for c in self.conditions):
            object.__setattr__(self, "conditions", self.conditions + DYNAMIC_CONDITIONS)
        known = CONDITIONS + SYNEG_CONDITIONS + DYNAMIC_CONDITIONS
        bad = [c for c in self.conditions if c not in known]
        if bad:
            raise InputError(f"experiment: unknown conditions {bad} (known: {list(known)})")
        if self.generate is None and any(c in SYNEG_CONDITIONS for c in self.conditions):
            raise InputError(
                "experiment: the +syneg conditions need a generate config (--generate FILE)"
            )
        if "noisy" not in self.conditions:
            raise InputError("experiment: the conditions must include noisy (the paired baseline)")
        for name in ("max_train_queries", "max_test_queries", "max_false_negatives"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "max_false_negatives" else 1):
                raise InputError(f"experiment: {name} must be positive, got {v}")
        if self.eval_precision not in ("fp32", "auto", "bf16"):
            raise InputError(
                f"experiment: eval_precision must be fp32, auto or bf16, got {self.eval_precision!r}"
            )

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON (the result's ``settings``)."""
        from trueneg.train._loop import config_dict

        d = {k: v for k, v in asdict(self).items() if k not in ("recipe", "judge", "generate")}
        d["seeds"] = list(self.seeds)
        d["conditions"] = list(self.conditions)
        d["recipe"] = config_dict(self.recipe)
        d["judge"] = "qrels" if self.judge is None else self.judge.as_dict()
        if self.generate is not None:
            d["generate"] = asdict(self.generate)
        return d


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class _Split:
    train: list[int]  # indices into data.query_ids
    test: list[int]


def _relevant(data: Any, threshold: int) -> list[dict[str, int]]:
    """Per query of ``data``: its relevant passages {docid: grade} that are in the corpus."""
    docs = set(data.doc_ids)
    return [
        {d: g for d, g in data.qrels.get(q, {}).items() if g >= threshold and d in docs}
        for q in data.query_ids
    ]


def split_queries(data: Any, cfg: ExperimentConfig, seed: int) -> _Split:
    """Judged queries (with a relevant passage) split into train and test by ``seed``."""
    rel = _relevant(data, cfg.relevance_threshold)
    judged = [i for i, r in enumerate(rel) if r]
    if len(judged) < 2:
        raise InputError(f"{data.name}: fewer than two queries with a relevant passage")
    order = np.random.default_rng([seed, 7]).permutation(len(judged))
    n_test = min(len(judged) - 1, max(1, round(len(judged) * cfg.test_share)))
    test = sorted(judged[i] for i in order[:n_test])
    train = sorted(judged[i] for i in order[n_test:])
    if cfg.max_test_queries is not None:
        test = test[: cfg.max_test_queries]
    if cfg.max_train_queries is not None:
        train = train[: cfg.max_train_queries]
    return _Split(train, test)


def labelled_positives(rel: dict[str, int], cfg: ExperimentConfig, seed: int, q: int) -> list[str]:
    """The K relevant passages a train query keeps as labelled positives."""
    docs = sorted(rel, key=lambda d: (-rel[d], d))
    if cfg.labelled == "best" or len(docs) <= cfg.labelled_positives:
        return docs[: cfg.labelled_positives]
    pick = np.random.default_rng([seed, q, 11]).choice(
        len(docs), cfg.labelled_positives, replace=False
    )
    return [docs[i] for i in sorted(pick.tolist())]


def _exact_copies(texts: Sequence[str]) -> np.ndarray:
    """Cluster id per passage: the first passage with the same text (exact copies share it)."""
    first: dict[str, int] = {}
    return np.asarray([first.setdefault(t, i) for i, t in enumerate(texts)], np.uint32)


def write_training_file(
    data: Any,
    split: _Split,
    cfg: ExperimentConfig,
    seed: int,
    qe: np.ndarray,
    de: np.ndarray,
    out: Path,
) -> dict[str, Any]:
    """The noisy training set as Tevatron JSONL: per train query its K labelled positives and
    the zero-shot model's top ``mine_depth`` other passages as negatives. Returns counts of the
    false negatives it holds (by the qrels)."""
    from trueneg.mine import select_negatives

    rel = _relevant(data, cfg.relevance_threshold)
    row_of = {d: i for i, d in enumerate(data.doc_ids)}
    positives = [[row_of[d] for d in labelled_positives(rel[q], cfg, seed, q)] for q in split.train]
    sel = select_negatives(
        qe[split.train],
        de,
        positives,
        num_negatives=cfg.mine_depth,
        range_max=cfg.mine_depth,
        relative_margin=None,
        sampling="top",
        cluster=_exact_copies(data.doc_texts),
    )

    def passage(row: int) -> dict[str, str]:
        return {
            "docid": data.doc_ids[row],
            "title": data.doc_titles[row],
            "text": data.doc_bodies[row],
        }

    lines, n_neg, n_fn, rows_fn = [], 0, 0, 0
    for k, q in enumerate(split.train):
        negs = sel.negatives(k)
        fn = sum(1 for j in negs if data.doc_ids[j] in rel[q])
        n_neg, n_fn, rows_fn = n_neg + len(negs), n_fn + fn, rows_fn + (fn > 0)
        row = {
            "query_id": data.query_ids[q],
            "query": data.query_texts[q],
            "positive_passages": [passage(j) for j in positives[k]],
            "negative_passages": [passage(j) for j in negs],
        }
        lines.append(orjson.dumps(row))
    with atomic_file(out) as f:
        f.write(b"\n".join(lines) + b"\n")
    return {
        "train_queries": len(split.train),
        "test_queries": len(split.test),
        "labelled_positives": sum(len(p) for p in positives),
        "unlabelled_positives": sum(len(rel[q]) for q in split.train)
        - sum(len(p) for p in positives),
        "negatives": n_neg,
        "false_negatives": n_fn,
        "share": n_fn / n_neg if n_neg else 0.0,
        "rows_with_false_negatives": rows_fn,
        "rows": len(split.train),
    }


def _subset(data: Any, queries: Sequence[int]) -> Any:
    qs = [data.query_ids[i] for i in queries]
    return replace(
        data,
        query_ids=qs,
        query_texts=[data.query_texts[i] for i in queries],
        qrels={q: data.qrels[q] for q in qs},
    )


def _scores(data: Any, qe: np.ndarray, de: np.ndarray) -> dict[str, Any]:
    from trueneg.evaluate import metrics, rank

    m = metrics(data.qrels, rank(data, qe, de))
    return {k: m[k] for k in (*METRICS, "queries")}


def judge_quality(coll_dir: Path, data: Any, threshold: int) -> dict[str, Any]:
    """The judge's flags on every (example, negative) pair against the qrels (unjudged pairs
    count as not relevant): precision, recall, Cohen's kappa, counts."""
    from trueneg import judgments
    from trueneg.collection import Collection
    from trueneg.evaluate import agreement
    from trueneg.fix import false_negative_pairs

    coll = Collection.load(coll_dir)
    pairs = false_negative_pairs(judgments.load(coll_dir))
    flagged = (
        set(zip(pairs["example"].to_pylist(), pairs["pid"].to_pylist(), strict=True))
        if len(pairs)
        else set()
    )
    qid = coll.queries["query_id"].to_pylist()
    docid = coll.passages["docid"].to_pylist()
    j, h = [], []
    for e, (q, negs) in enumerate(
        zip(coll.examples["qid"].to_pylist(), coll.examples["negatives"].to_pylist(), strict=True)
    ):
        judged = data.qrels.get(qid[q], {})
        for p in negs:
            j.append((e, p) in flagged)
            h.append(judged.get(docid[p], 0) >= threshold)
    return agreement(j, h) if j else {"n": 0}


# ---------------------------------------------------------------------------------------------
# Running


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mean_std(xs: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation over the seeds that have a value (None: no value,
    e.g. a condition left with no training rows)."""
    a = np.asarray([x for x in xs if x is not None], float)
    return {
        "mean": float(a.mean()) if len(a) else None,
        "std": float(a.std(ddof=1)) if len(a) > 1 else (0.0 if len(a) else None),
        "per_seed": [None if x is None else float(x) for x in xs],
    }


def run_experiment(
    dataset: str | Path,
    config: ExperimentConfig | None = None,
    *,
    workdir: str | Path | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the experiment on one BEIR-format folder; returns the result (see the module doc):
    ``{"dataset", "settings", "false_negatives", "judge_quality", "conditions", "paired",
    "seconds"}``. ``workdir`` keeps the collections, models and per-run results (a rerun
    resumes); by default a temporary folder that is removed.

    >>> r = run_experiment("tests/data/beir-cisi", ExperimentConfig(seeds=(0,)))  # doctest: +SKIP
    >>> r["paired"]["relabel"]["delta_vs_noisy"]["mean"]  # doctest: +SKIP
    """
    cfg = config or ExperimentConfig()
    ds = Path(dataset)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="trueneg-experiment-") as tmp:
            return _run(ds, cfg, Path(tmp), say)
    return _run(ds, cfg, Path(workdir), say)


def _run(ds: Path, cfg: ExperimentConfig, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from trueneg.formats.beir import load_beir
    from trueneg.train.retriever import recipe_encoder

    t0 = time.perf_counter()
    data = load_beir(ds)
    work.mkdir(parents=True, exist_ok=True)
    recipe = cfg.recipe
    base = recipe_encoder(recipe, dtype=cfg.eval_precision, cache_dir=str(work / "embeddings"))
    say(f"{data.name}: {len(data.doc_ids):,} passages, {len(data.query_ids)} judged queries")
    qe0 = base.encode(data.query_texts, "query", desc="embed queries (zero-shot)")
    de0 = base.encode(data.doc_texts, "passage", desc="embed corpus (zero-shot)")
    settings = cfg.settings()
    # per-seed results do not depend on which other seeds run: adding a seed reuses the others
    fp = _fingerprint(
        {k: v for k, v in settings.items() if k not in ("seeds", "conditions", "dynamic")},
        data.name,
        len(data.doc_ids),
        base.fingerprint(),
    )
    runs: dict[str, dict[int, dict[str, Any]]] = {c: {} for c in cfg.conditions}
    fn_stats, quality = [], []
    for seed in cfg.seeds:
        sdir = work / f"seed-{seed}"
        sdir.mkdir(exist_ok=True)
        split = split_queries(data, cfg, seed)
        test = _subset(data, split.test)
        if "zero-shot" in runs:
            runs["zero-shot"][seed] = {
                **_scores(test, qe0[split.test], de0),
                "rows": 0,
                "steps": 0,
            }
        colls, stats = _collections(data, split, cfg, seed, qe0, de0, sdir, fp)
        fn_stats.append(stats["false_negatives"])
        quality.append(stats["judge_quality"])
        eci = _eci_per_collection(colls, data, qe0, de0, base)
        # noisy first: the step-matched control takes its step count
        for cond in sorted(cfg.conditions, key=lambda c: c != "noisy"):
            if cond == "zero-shot":
                continue
            steps = runs["noisy"][seed]["steps"] if cond == "relabel-matched" else None
            runs[cond][seed] = _condition(
                cond, colls, test, cfg, seed, sdir, fp, base.max_length, steps
            ) | ({} if cond in DYNAMIC_CONDITIONS else {"eci": eci[_SOURCE[cond]]})
            r = runs[cond][seed]
            say(
                f"seed {seed} {cond}: nDCG@10 {r['nDCG@10']:.4f} "
                f"({r['rows']} rows, {r['steps']} steps, {r['seconds']:.0f} s)"
            )
    return summarize(data.name, settings, runs, fn_stats, quality, time.perf_counter() - t0)


def _collections(
    data: Any,
    split: _Split,
    cfg: ExperimentConfig,
    seed: int,
    qe: np.ndarray,
    de: np.ndarray,
    sdir: Path,
    fp: str,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The noisy collection (mined, judged) and its fixed versions, made once per seed."""
    from trueneg.fix import fix_collection
    from trueneg.formats import ingest
    from trueneg.judge import judge_collection

    done = sdir / "collections.json"
    names = ["noisy", "remove", "remove-hn", "relabel"]
    if cfg.generate is not None:
        names += list(SYNEG_CONDITIONS)
    colls = {n: sdir / n for n in names}
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("fingerprint") == fp and all(
            (p / "manifest.json").is_file() for p in colls.values()
        ):
            return colls, saved["stats"]
    for p in colls.values():
        remove_own_folder(p)
    train_file = sdir / "train.jsonl"
    fn = write_training_file(data, split, cfg, seed, qe, de, train_file)
    ingest([train_file], colls["noisy"], format="tevatron", overwrite=True)
    judge = _judge(cfg, sdir.parent)
    if cfg.judge is None:
        _write_qrels(data, sdir.parent / "qrels.tsv")
    summary = judge_collection(colls["noisy"], judge, cache_path=sdir.parent / "judge-cache.sqlite")
    for strategy in ("remove", "remove-hn", "relabel"):
        fix_collection(
            colls["noisy"],
            colls[strategy],
            strategy,
            max_false_negatives=cfg.max_false_negatives,
            exempt=None,
            overwrite=True,
        )
    if cfg.generate is not None:
        from trueneg.generate import generate_collection

        for cond in SYNEG_CONDITIONS:
            gen = generate_collection(
                colls[cond.removesuffix("+syneg")],
                colls[cond],
                cfg.generate,
                cache_path=sdir.parent / "judge-cache.sqlite",
                overwrite=True,
            )
            fn.setdefault("syneg", {})[cond] = {
                "generated": gen.generated,
                "used": gen.used,
                "mixed": gen.mixed,
                "refilled": gen.refilled,
                "rejected": gen.rejected,
                "cost_usd": gen.cost_usd,
            }
    stats = {
        "false_negatives": fn,
        "judge_quality": {
            **judge_quality(colls["noisy"], data, cfg.relevance_threshold),
            "flagged": summary.false_negatives,
            "cost_usd": summary.cost_usd,
        },
    }
    with atomic_file(done, "w") as f:
        json.dump({"fingerprint": fp, "stats": stats}, f)
    return colls, stats


def _judge(cfg: ExperimentConfig, work: Path) -> Any:
    """The experiment's judge: its config, or the qrels oracle reading ``work/qrels.tsv``."""
    from trueneg.judge import JudgeConfig, Stage

    return cfg.judge or JudgeConfig(
        stages=(
            Stage(
                "qrels",
                "qrels",
                "",
                backend="qrels",
                qrels=str(work / "qrels.tsv"),
                relevance_threshold=cfg.relevance_threshold,
            ),
        )
    )


def dynamic_recipe(cfg: ExperimentConfig, cond: str, work: Path) -> Any:
    """The recipe of a dynamic condition: ADORE's filtering (positives only) for ``dynamic``;
    for ``dynamic-filtered`` the false-negative filters of the static mining and judging it is
    compared with (duplicates, verdicts, the experiment's judge in the loop; no margin)."""
    from trueneg.train.dynamic import DynamicConfig

    if cond == "dynamic":
        dyn = DynamicConfig.plain(range_max=cfg.mine_depth)
    else:
        # no margin: the static mining it is compared with has none
        dyn = DynamicConfig(
            range_max=cfg.mine_depth,
            relative_margin=None,
            judge=_judge(cfg, work),
            judge_cache=str(work / "judge-cache.sqlite"),
        )
    return replace(cfg.recipe, negatives="dynamic", dynamic=dyn)


def _eci_per_collection(
    colls: dict[str, Path], data: Any, qe0: np.ndarray, de0: np.ndarray, base: Any
) -> dict[str, dict[str, Any]]:
    """ECI (:mod:`trueneg.score`) of each training collection, from the zero-shot encoder's
    embeddings the experiment already has (generated passages are embedded here)."""
    from trueneg.collection import Collection
    from trueneg.score import ECI_TERMS, eci_of

    q_row = {q: i for i, q in enumerate(data.query_ids)}
    d_row = {d: i for i, d in enumerate(data.doc_ids)}
    out: dict[str, dict[str, Any]] = {}
    for name, path in colls.items():
        coll = Collection.load(path)
        qe = qe0[[q_row[q] for q in coll.queries["query_id"].to_pylist()]]
        docids = coll.passages["docid"].to_pylist()
        rows = [d_row.get(d, -1) for d in docids]
        pe = de0[np.maximum(np.asarray(rows, np.int64), 0)]
        new = [i for i, r in enumerate(rows) if r < 0]
        if new:
            texts = coll.passages["text"].to_pylist()
            pe[new] = base.encode([texts[i] for i in new], "passage", desc="embed generated")
        summary, _ = eci_of(coll, qe, pe)
        out[name] = {k: getattr(summary, k) for k in ECI_TERMS} | {
            "unsafe_share": summary.unsafe_share
        }
    return out


def _write_qrels(data: Any, out: Path) -> None:
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{g}" for q, docs in data.qrels.items() for d, g in docs.items()
    ]
    with atomic_file(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def _row_counts(noisy: Path, relabel: Path) -> list[int]:
    """Rows per example of the step-matched control: noisy's positives per query."""
    from trueneg.collection import Collection

    n = Collection.load(noisy).examples
    count = {
        q: len(p) for q, p in zip(n["qid"].to_pylist(), n["positives"].to_pylist(), strict=True)
    }
    return [count.get(q, 0) for q in Collection.load(relabel).examples["qid"].to_pylist()]


def _condition(
    cond: str,
    colls: dict[str, Path],
    test: Any,
    cfg: ExperimentConfig,
    seed: int,
    sdir: Path,
    fp: str,
    eval_length: int,
    steps: int | None = None,
) -> dict[str, Any]:
    """Train one condition (for ``steps`` steps when given) and evaluate it on the test
    queries; the result is stored and reused on a rerun."""
    from trueneg.collection import Collection
    from trueneg.train.retriever import recipe_encoder, train_retriever

    done = sdir / f"{cond}.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("fingerprint") == fp:
            return dict(saved["result"])
    t = time.perf_counter()
    src = colls[_SOURCE[cond]]
    schedule = replace(cfg.recipe.schedule, seed=seed)
    if steps is not None:
        schedule = replace(schedule, max_steps=max(1, steps))
    recipe = replace(cfg.recipe, schedule=schedule)
    if cond in DYNAMIC_CONDITIONS:
        recipe = replace(dynamic_recipe(cfg, cond, sdir.parent), schedule=schedule)
    if not any(Collection.load(src).examples["positives"].to_pylist()):
        result: dict[str, Any] = {m: None for m in METRICS}
        result.update(rows=0, steps=0, seconds=0.0, note="no training rows left")
    else:
        counts = _row_counts(colls["noisy"], src) if cond == "relabel-matched" else None
        model_dir = sdir / f"model-{cond}"
        tr = train_retriever(src, model_dir, recipe, overwrite=True, resume=True, row_counts=counts)
        enc = recipe_encoder(recipe, model_dir, max_length=eval_length, dtype=cfg.eval_precision)
        qe = enc.encode(test.query_texts, "query", desc=f"embed test queries ({cond})")
        de = enc.encode(test.doc_texts, "passage", desc=f"embed corpus ({cond})")
        result = {
            **_scores(test, qe, de),
            "rows": tr["rows"],
            "steps": tr["steps"],
            "train_seconds": tr["seconds"],
            "peak_rss_mb": tr["peak_rss_mb"],
        }
        if "negatives" in tr:
            result["dynamic"] = {k: v for k, v in tr["negatives"].items() if k != "log"}
        shutil.rmtree(model_dir, ignore_errors=True)  # models are large; the numbers are kept
        result["seconds"] = time.perf_counter() - t
    with atomic_file(done, "w") as f:
        json.dump({"fingerprint": fp, "result": result}, f)
    return result


# ---------------------------------------------------------------------------------------------
# Results


def summarize(
    name: str,
    settings: dict[str, Any],
    runs: dict[str, dict[int, dict[str, Any]]],
    fn_stats: list[dict[str, Any]],
    quality: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The result dict from per-seed runs: per condition mean / std / per-seed metrics, rows
    and steps; paired deltas of nDCG@10 against noisy (same seed)."""
    seeds = settings["seeds"]
    conditions: dict[str, Any] = {}
    for cond, per in runs.items():
        conditions[cond] = {m: _mean_std([per[s][m] for s in seeds]) for m in METRICS} | {
            "rows": [per[s]["rows"] for s in seeds],
            "steps": [per[s]["steps"] for s in seeds],
        }
        if all(per[s].get("train_seconds") is not None for s in seeds):
            conditions[cond]["train_seconds"] = _mean_std([per[s]["train_seconds"] for s in seeds])
        if all("dynamic" in per[s] for s in seeds):
            conditions[cond]["dynamic"] = [per[s]["dynamic"] for s in seeds]
        if all("eci" in per[s] for s in seeds):
            conditions[cond]["eci"] = _mean_std([per[s]["eci"]["eci"] for s in seeds])
            conditions[cond]["eci_terms"] = [per[s]["eci"] for s in seeds]
    paired = {}
    for cond, per in runs.items():
        if cond == "noisy":
            continue
        d = [
            None
            if per[s]["nDCG@10"] is None or runs["noisy"][s]["nDCG@10"] is None
            else per[s]["nDCG@10"] - runs["noisy"][s]["nDCG@10"]
            for s in seeds
        ]
        paired[cond] = {"delta_vs_noisy": _mean_std(d)}
        if cond in DYNAMIC_CONDITIONS and "relabel" in runs:
            paired[cond]["delta_vs_relabel"] = _mean_std(
                [
                    None
                    if per[s]["nDCG@10"] is None or runs["relabel"][s]["nDCG@10"] is None
                    else per[s]["nDCG@10"] - runs["relabel"][s]["nDCG@10"]
                    for s in seeds
                ]
            )
    share = [f["share"] for f in fn_stats]
    return {
        "dataset": name,
        "settings": settings,
        "false_negatives": {
            "share_of_mined_negatives": float(np.mean(share)),
            "rows_with_false_negatives": float(
                np.mean([f["rows_with_false_negatives"] / max(1, f["rows"]) for f in fn_stats])
            ),
            "per_seed": fn_stats,
        },
        "judge_quality": {
            k: float(np.mean([q[k] for q in quality]))
            for k in ("precision", "recall", "kappa")
            if all(k in q for q in quality)
        }
        | {"per_seed": quality},
        "conditions": conditions,
        "paired": paired,
        "eci_vs_ndcg": eci_correlation(runs, seeds),
        "seconds": seconds,
    }


#: conditions whose training data differ (relabel-matched trains relabel's data for fewer steps:
#: the same ECI, so it is left out of the correlation)
ECI_CONDITIONS = ("noisy", "remove", "remove-hn", "relabel", *SYNEG_CONDITIONS)


def eci_correlation(runs: dict[str, dict[int, dict[str, Any]]], seeds: Sequence[int]) -> Any:
    """Spearman's rank correlation between the training set's ECI and the trained nDCG@10, over
    every (condition, seed) of :data:`ECI_CONDITIONS` (pooled), and within each seed (their
    mean): does the training-free score order the sets as training does?"""
    from trueneg.score import spearman

    pairs = [
        (runs[c][s]["eci"]["eci"], runs[c][s]["nDCG@10"], s)
        for c in ECI_CONDITIONS
        if c in runs
        for s in seeds
        if "eci" in runs[c].get(s, {}) and runs[c][s]["nDCG@10"] is not None
    ]
    if not pairs:
        return None
    within = [
        spearman([e for e, _, t in pairs if t == s], [n for _, n, t in pairs if t == s])
        for s in seeds
    ]
    w = [x for x in within if x is not None]
    return {
        "spearman": spearman([e for e, _, _ in pairs], [n for _, n, _ in pairs]),
        "pairs": len(pairs),
        "spearman_within_seed": within,
        "spearman_within_seed_mean": float(np.mean(w)) if w else None,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table (one row per condition)."""
    seeds = result["settings"]["seeds"]
    lines = [
        f"**{result['dataset']}**, {len(seeds)} seed(s) {seeds}; false negatives: "
        f"{result['false_negatives']['share_of_mined_negatives']:.1%} of mined negatives, "
        f"{result['false_negatives']['rows_with_false_negatives']:.0%} of train queries",
        "",
    ]
    table = rows(result)
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|---" * len(table[0]) + "|")
    lines += ["| " + " | ".join(r.values()) + " |" for r in table]
    c = result.get("eci_vs_ndcg")
    if c and c.get("spearman") is not None:
        within = c.get("spearman_within_seed_mean")
        lines += [
            "",
            f"ECI of the training set vs trained nDCG@10: Spearman {c['spearman']:+.3f} over "
            f"{c['pairs']} (condition, seed) pairs"
            + (f"; within a seed {within:+.3f} on average." if within is not None else "."),
        ]
    q = result["judge_quality"]
    if "kappa" in q:
        lines += [
            "",
            f"Judge vs qrels: precision {q['precision']:.3f}, recall {q['recall']:.3f}, "
            f"Cohen's kappa {q['kappa']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out: str | Path) -> None:
    """Write :func:`plot_png` to ``out``."""
    png = plot_png(result)
    with atomic_file(out) as f:
        f.write(png)


def rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per condition (for tables): metrics as mean ± std, the paired delta, rows, steps."""

    def cell(v: dict[str, Any] | None, sign: str = "") -> str:
        if v is None:
            return "—"
        if v["mean"] is None:
            return "— (no rows left)"
        return f"{v['mean']:{sign}.4f} ± {v['std']:.4f}"

    out = []
    has_eci = any("eci" in c for c in result["conditions"].values())
    vs_relabel = any("delta_vs_relabel" in p for p in result["paired"].values())
    for cond, c in result["conditions"].items():
        p = result["paired"].get(cond)
        out.append(
            {"condition": cond}
            | {m: cell(c[m]) for m in METRICS}
            | {
                "Δ nDCG@10 vs noisy (paired)": cell(p["delta_vs_noisy"] if p else None, "+"),
            }
            | (
                {"Δ vs relabel (paired)": cell(p.get("delta_vs_relabel") if p else None, "+")}
                if vs_relabel
                else {}
            )
            | {
                "rows": "/".join(str(x) for x in c["rows"]),
                "steps": "/".join(str(x) for x in c["steps"]),
                "train s": f"{c['train_seconds']['mean']:.0f}" if "train_seconds" in c else "—",
            }
            | ({"ECI": cell(c.get("eci"))} if has_eci else {})
        )
    return out


def plot_png(result: dict[str, Any]) -> bytes:
    """A PNG: nDCG@10 per condition (mean over seeds; error bars: the seeds' standard deviation,
    which mixes in how hard each seed's test split is) and, beside it, the paired delta to noisy
    (same seed, same test queries: the comparison that matters)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = result["conditions"]
    names = [n for n in conds if conds[n]["nDCG@10"]["mean"] is not None]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    colors = {"zero-shot": "#999999", "noisy": "#c44e52"}
    means = [conds[n]["nDCG@10"]["mean"] for n in names]
    stds = [conds[n]["nDCG@10"]["std"] for n in names]
    ax.bar(names, means, yerr=stds, capsize=4, color=[colors.get(n, "#4c72b0") for n in names])
    if means:
        lo = min(m - s for m, s in zip(means, stds, strict=True))
        hi = max(m + s for m, s in zip(means, stds, strict=True))
        pad = max(0.005, (hi - lo) * 0.15)
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_ylabel("nDCG@10 (test queries)")
    ax.set_title(f"{result['dataset']}: {len(result['settings']['seeds'])} seed(s)")
    ax.tick_params(axis="x", labelrotation=25)
    paired = [
        (n, result["paired"][n]["delta_vs_noisy"])
        for n in names
        if n in result["paired"] and result["paired"][n]["delta_vs_noisy"]["mean"] is not None
    ]
    bx.bar(
        [n for n, _ in paired],
        [d["mean"] for _, d in paired],
        yerr=[d["std"] for _, d in paired],
        capsize=4,
        color=[colors.get(n, "#4c72b0") for n, _ in paired],
    )
    bx.axhline(0, color="#333", lw=0.8)
    bx.set_ylabel("paired Δ nDCG@10 vs noisy")
    bx.set_title("same seed, same test queries")
    bx.tick_params(axis="x", labelrotation=25)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: dict[str, Any], out: str | Path) -> list[Path]:
    """``out`` (JSON), and beside it ``.md`` and ``.png`` (one per dataset when several)."""
    out = Path(out)
    with atomic_file(out, "w") as f:
        json.dump(result, f, indent=2)
    written = [out]
    results = list(result["datasets"].values()) if "datasets" in result else [result]
    md = "\n".join(markdown(r) for r in results)
    with atomic_file(out.with_suffix(".md"), "w") as f:
        f.write(md)
    written.append(out.with_suffix(".md"))
    for r in results:
        png = (
            out.with_suffix(".png")
            if len(results) == 1
            else out.with_name(f"{out.stem}-{r['dataset']}.png")
        )
        plot(r, png)
        written.append(png)
    return written
