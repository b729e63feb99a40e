"""Dataset pruning as in RLHN §5.1: leave-one-subset-out runs, a keep/drop decision from their
results, and a collection restricted to the kept subsets.

1. ``plan``: one training run on every subset ("all") plus one per subset without it (each run
   names its training subsets and the evaluation sets); ``run`` (:func:`run_plan`) trains and
   evaluates every run with one recipe, resumable run by run, and decides.
2. ``decide``: a subset is dropped when training without it scores higher on average than training
   on everything ("removing it helps"), unless it is listed as necessary (the paper keeps every
   subset with a BEIR counterpart).
3. ``apply``: write a collection with only the kept subsets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from trueneg._io import (
    atomic_file,
    check_output,
    mark_own_folder,
    remove_own_folder,
)
from trueneg.collection import Collection
from trueneg.exceptions import InputError


def subset_sizes(coll: Collection) -> dict[str, int]:
    sub = coll.queries["subset"].combine_chunks().take(coll.examples["qid"].combine_chunks())
    counts = pc.value_counts(sub).to_pylist()
    return {d["values"]: d["counts"] for d in sorted(counts, key=lambda d: d["values"])}


def plan(coll: Collection, evals: list[str]) -> dict[str, Any]:
    sizes = subset_sizes(coll)
    subsets = list(sizes)
    runs = [{"name": "all", "train_subsets": subsets, "examples": sum(sizes.values())}]
    for s in subsets:
        rest = [x for x in subsets if x != s]
        runs.append(
            {
                "name": f"without:{s}",
                "left_out": s,
                "train_subsets": rest,
                "examples": sum(sizes[x] for x in rest),
            }
        )
    return {"collection": str(coll.path), "eval": evals, "subsets": sizes, "runs": runs}


@dataclass
class Decision:
    baseline: float
    keep: list[str]
    drop: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _score(v: Any) -> float:
    """A run's result: a number, or a mapping of per-dataset scores (averaged)."""
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, dict):
        nums = [float(x) for x in v.values() if isinstance(x, int | float)]
        if nums:
            return float(np.mean(nums))
        for key in ("ndcg@10", "nDCG@10", "average"):
            if key in v:
                return _score(v[key])
    raise InputError(
        f"cannot read a score from {v!r} (give a number or a mapping of dataset -> score)"
    )


def decide(
    plan_: dict[str, Any],
    results: dict[str, Any],
    necessary: list[str] | None = None,
    margin: float = 0.0,
) -> Decision:
    if "all" not in results:
        raise InputError(
            "the results need the 'all' run (training on every subset) as the baseline"
        )
    base = _score(results["all"])
    keep: list[str] = []
    drop: list[str] = []
    rows: list[dict[str, Any]] = []
    for r in plan_["runs"][1:]:
        s = r["left_out"]
        if r["name"] not in results:
            raise InputError(f"no result for run {r['name']!r}")
        without = _score(results[r["name"]])
        helps = without > base + margin
        is_necessary = s in (necessary or [])
        (drop if helps and not is_necessary else keep).append(s)
        rows.append(
            {
                "subset": s,
                "score_without": without,
                "delta": without - base,
                "removal_helps": helps,
                "necessary": is_necessary,
                "decision": "drop" if helps and not is_necessary else "keep",
            }
        )
    return Decision(baseline=base, keep=keep, drop=drop, rows=rows)


def apply(path: str | Path, out: str | Path, keep: list[str], *, overwrite: bool = False) -> int:
    """Write a collection with only the examples of the ``keep`` subsets; returns their count."""
    coll = Collection.load(path)
    sizes = subset_sizes(coll)
    unknown = sorted(set(keep) - set(sizes))
    if unknown:
        raise InputError(f"unknown subsets {unknown} (the collection has {sorted(sizes)})")
    sub = coll.queries["subset"].combine_chunks().take(coll.examples["qid"].combine_chunks())
    ex = coll.examples.filter(pc.is_in(sub, pa.array(keep)))
    coll.derive(
        out,
        ex,
        step="prune",
        params={"keep": keep, "source": str(coll.path)},
        overwrite=overwrite,
    )
    return len(ex)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as f:
        f.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2))


def run_plan(
    plan_: dict[str, Any],
    workdir: str | Path,
    recipe: Any = None,
    *,
    necessary: list[str] | None = None,
    margin: float = 0.0,
    eval_precision: str = "fp32",
    say: Any = lambda s: None,
) -> tuple[dict[str, Any], Decision]:
    """Execute a plan: for every run, the collection restricted to its subsets is trained with
    one recipe (a ``RetrieverConfig``; default: the trainer's defaults) and evaluated on the
    plan's BEIR sets (nDCG@10); then :func:`decide`. Results go to ``workdir/results.json`` after
    each run (a rerun with the same plan and recipe skips the runs it has), the decision to
    ``workdir/decision.json``. Returns (results, decision)."""
    import json

    from trueneg.evaluate import evaluate_beir
    from trueneg.train._loop import config_dict
    from trueneg.train.retriever import RetrieverConfig, recipe_encoder, train_retriever

    if not plan_.get("eval"):
        raise InputError("the plan has no evaluation sets (make it with prune plan eval=DIR)")
    recipe = recipe or RetrieverConfig()
    work = Path(workdir)
    check_output(work, [plan_["collection"], *plan_["eval"]])
    mark_own_folder(work)
    tag = {
        "plan": {k: plan_[k] for k in ("collection", "eval", "runs")},
        "recipe": config_dict(recipe),
        "eval_precision": eval_precision,
    }
    res_file = work / "results.json"
    saved = json.loads(res_file.read_text()) if res_file.is_file() else {}
    results: dict[str, Any] = saved.get("results", {}) if saved.get("tag") == tag else {}
    for r in plan_["runs"]:
        name = r["name"]
        if name in results:
            say(f"{name}: done before ({results[name]['average']:.4f})")
            continue
        safe = name.replace(":", "-").replace("/", "-")
        coll_dir, model_dir = work / f"collection-{safe}", work / f"model-{safe}"
        n = apply(plan_["collection"], coll_dir, r["train_subsets"], overwrite=True)
        tr = train_retriever(coll_dir, model_dir, recipe, overwrite=True, resume=True)
        enc = recipe_encoder(recipe, model_dir, dtype=eval_precision)
        ev = evaluate_beir(plan_["eval"], enc)
        scores = {d: s["retrieval"]["nDCG@10"] for d, s in ev["datasets"].items()}
        results[name] = {
            "datasets": scores,
            "average": float(np.mean(list(scores.values()))),
            "examples": n,
            "steps": tr["steps"],
        }
        remove_own_folder(coll_dir)
        remove_own_folder(model_dir)
        write_json(res_file, {"tag": tag, "results": results})
        say(f"{name}: {n:,} examples, {tr['steps']} steps, nDCG@10 {results[name]['average']:.4f}")
    decision = decide(
        plan_, {k: v["datasets"] for k, v in results.items()}, necessary=necessary, margin=margin
    )
    write_json(work / "decision.json", decision.as_dict())
    return results, decision
