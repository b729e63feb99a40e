"""How good is a local scorer as a pre-filter in front of an LLM judge? Measured against the
verdicts an LLM cascade already gave (e.g. RLHN's GPT-4o answers on the bundled sample).

A local stage (``backend = "local"``) sends a call on to the LLM when one of its negatives
scores at least ``p - |p| * margin`` (``p``: the example's lowest positive score). For every
margin of a grid this module counts, against the reference false negatives (the cascade's final
flags), the share of them that the pre-filter passes on (recall: what the LLM can still find)
and the share of the LLM's calls it saves. The curve goes into the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from trueneg import judgments
from trueneg.collection import Collection
from trueneg.exceptions import InputError

#: margins tried by default: strict (only negatives above the lowest positive) to permissive
MARGINS = tuple(float(x) for x in np.round(np.arange(-0.3, 1.01, 0.05), 2))


def prefilter_curve(
    collection: str | Path,
    *,
    scorer: str = "embedding",
    model: str = "default",
    margins: Sequence[float] = MARGINS,
    max_per_call: int = 25,
) -> dict[str, Any]:
    """The curve for one local scorer (``embedding`` cosine, or a ``cross-encoder``'s logit) on a
    judged collection: per margin, ``passed`` (share of the reference false negatives passed on),
    ``calls`` (share of the LLM calls still sent), ``pairs`` (share of negatives in them) and
    ``saving`` (1 / calls). The reference is the collection's final judge flags (no dedup rows).
    Also the best margin that passes >= 90% of the reference false negatives."""
    from trueneg.judge.cascade import (
        CollectionText,
        _local_scores,
        plan_stage,
        uncertain_bound,
    )
    from trueneg.judge.config import Stage

    coll = Collection.load(collection)
    t = judgments.load(coll.path)
    judged = t.filter(pc.greater(t["stage_index"], 0)) if len(t) else t
    if not len(judged):
        raise InputError(f"{coll.path}: no judge verdicts to compare against (run the judge first)")
    fin = judgments.final_flags(judged)
    ref = {
        (e, p)
        for e, p, f in zip(
            fin["example"].to_pylist(),
            fin["pid"].to_pylist(),
            fin["flagged"].to_pylist(),
            strict=True,
        )
        if f
    }
    if not ref:
        raise InputError(f"{coll.path}: the judge flagged no false negative to measure against")
    text = CollectionText(coll)
    stage = Stage(
        "prefilter", model, "", backend="local", local_scorer=scorer, max_per_call=max_per_call
    )
    plan = plan_stage(text, stage, False)
    score = _local_scores(text, stage, plan)
    calls = list(zip(plan.example.tolist(), plan.start.tolist(), plan.end.tolist(), strict=True))
    n_pairs = sum(t - s for _, s, t in calls)
    rows = []
    for m in margins:
        sent_calls = sent_pairs = passed = 0
        for e, s, t_ in calls:
            bound = uncertain_bound(score, text.positives[e], e, m)
            negs = text.negatives[e][s:t_]
            if any(score[(e, p)] >= bound for p in negs):
                sent_calls += 1
                sent_pairs += len(negs)
                passed += sum(1 for p in negs if (e, p) in ref)
        share = sent_calls / len(calls)
        rows.append(
            {
                "margin": float(m),
                "passed": passed / len(ref),
                "calls": share,
                "pairs": sent_pairs / max(1, n_pairs),
                "saving": (1 / share) if share else None,
            }
        )
    ok = [r for r in rows if r["passed"] >= 0.9]
    best = min(ok, key=lambda r: r["calls"]) if ok else None
    return {
        "collection": str(coll.path),
        "scorer": scorer,
        "model": model,
        "reference_false_negatives": len(ref),
        "calls": len(calls),
        "curve": rows,
        "best_at_90": best,
    }


def plot_png(curves: Sequence[dict[str, Any]]) -> bytes:
    """Passed share of the reference false negatives against the call saving, one line per
    scorer, the 90% / 2x target marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    for c in curves:
        pts = [(1 - r["calls"], r["passed"]) for r in c["curve"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=c["scorer"])
    ax.axhline(0.9, color="#888", lw=0.8, ls="--")
    ax.axvline(0.5, color="#888", lw=0.8, ls="--")
    ax.set_xlabel("share of LLM calls saved (0.5 = 2x fewer)")
    ax.set_ylabel("share of the LLM's false negatives passed on")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
