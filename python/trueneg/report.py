"""The report: one self-contained HTML page (plots embedded as PNG data) and a Markdown twin with
its PNG files, from a pipeline work folder or a judged collection."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.compute as pc

from trueneg import judgments
from trueneg._io import atomic_file
from trueneg.collection import Collection
from trueneg.fix import false_negative_pairs


@dataclass
class Figure:
    name: str
    title: str
    png: bytes
    caption: str = ""


@dataclass
class ReportData:
    title: str
    collection: Collection
    judge_summary: dict[str, Any] | None = None
    dedup: dict[str, Any] | None = None
    fixes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``trueneg experiment`` results (each one dataset's) shown as tables and plots
    experiments: list[dict[str, Any]] = field(default_factory=list)
    #: ``trueneg judge prefilter`` curves (one per local scorer), shown as one plot
    prefilters: list[dict[str, Any]] = field(default_factory=list)
    #: ``trueneg score-negatives`` summaries (one per collection), shown as a table
    eci: list[dict[str, Any]] = field(default_factory=list)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _figures(d: ReportData, t: Any, pairs: Any) -> tuple[list[Figure], list[str]]:
    plt = _plt()
    coll = d.collection
    figs: list[Figure] = []
    notes: list[str] = []
    ex_subset = (
        coll.queries["subset"]
        .combine_chunks()
        .take(coll.examples["qid"].combine_chunks())
        .to_numpy(zero_copy_only=False)
    )
    subsets = sorted(set(ex_subset.tolist()))
    stages = sorted(set(t["stage"].to_pylist()), key=lambda s: (s != "dedup", s)) if len(t) else []

    # 1. examples and examples with false negatives, per subset and stage
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / (1 + len(stages))
    x = np.arange(len(subsets))
    ax.bar(
        x, [int((ex_subset == s).sum()) for s in subsets], width, label="examples", color="#9aa5b1"
    )
    for i, st in enumerate(stages):
        f = t.filter(pc.and_(pc.equal(t["stage"], st), t["flagged"]))
        ex_fn = np.unique(f["example"].to_numpy()) if len(f) else np.zeros(0, np.int64)
        ax.bar(
            x + (i + 1) * width,
            [int((ex_subset[ex_fn] == s).sum()) for s in subsets],
            width,
            label=f"with false negatives: {st}",
        )
    ax.set_xticks(x + width * len(stages) / 2, subsets)
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    figs.append(
        Figure("per_subset", "Examples and false negatives per subset and stage", _png(fig))
    )

    # 2. false negatives per flagged example (the paper's Fig. 3)
    if len(pairs):
        counts = np.bincount(pairs["example"].to_numpy())
        counts = counts[counts > 0]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        top = min(15, int(counts.max()))
        h = [(counts == k).sum() / len(counts) * 100 for k in range(1, top + 1)]
        ax.bar(range(1, top + 1), h, color="#3e7cb1")
        ax.set_xlabel("false negatives in the example")
        ax.set_ylabel("% of flagged examples")
        figs.append(
            Figure(
                "fn_histogram",
                "False negatives per flagged example (cf. RLHN Fig. 3)",
                _png(fig),
                f"{len(counts):,} flagged examples, {int(counts.sum()):,} false negatives",
            )
        )
    else:
        notes.append("No false negatives were found, so there is no histogram.")

    # 3. cost per stage and per false negative
    js = d.judge_summary
    if js and js.get("stages"):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 3.0))
        names = [s["name"] for s in js["stages"]]
        paid = sum(s["cost_usd"] for s in js["stages"]) > 0
        key = "cost_usd" if paid else "estimated_cost_usd"
        cost = [s[key] for s in js["stages"]]
        per = [
            (c / s["false_negatives"]) if s["false_negatives"] else 0
            for c, s in zip(cost, js["stages"], strict=True)
        ]
        ax.bar(range(len(names)), cost, 0.6, color="#3e7cb1")
        ax.set_title("cost (USD)" if paid else "worst-case list price (USD)", fontsize=9)
        ax.set_xticks(range(len(names)), names)
        ax2.bar(range(len(names)), per, 0.6, color="#e07a5f")
        ax2.set_title("per false negative found (USD)", fontsize=9)
        ax2.set_xticks(range(len(names)), names)
        fig.tight_layout()
        cap = (
            ""
            if paid
            else "Nothing was paid in this run (answers imported or cached); the bars show what the "
            "calls would cost at list price with the full output budget."
        )
        figs.append(Figure("cost", "Cost per stage and per false negative found", _png(fig), cap))

    # 4. score distributions
    ex = coll.examples
    ps, ns = ex["pos_scores"], ex["neg_scores"]
    if ns.null_count < len(ns):
        pos_v = (
            pc.list_flatten(ps).to_numpy(zero_copy_only=False).astype(float)
            if ps.null_count < len(ps)
            else np.zeros(0)
        )
        pos_v = pos_v[~np.isnan(pos_v)]
        neg_all = ns.combine_chunks()
        fn_set = (
            set(zip(pairs["example"].to_pylist(), pairs["pid"].to_pylist(), strict=True))
            if len(pairs)
            else set()
        )
        neg_fn: list[float] = []
        neg_rest: list[float] = []
        for i, (pids, sc) in enumerate(
            zip(ex["negatives"].to_pylist(), neg_all.to_pylist(), strict=True)
        ):
            for p, v in zip(pids, sc or [], strict=False):
                (neg_fn if (i, p) in fn_set else neg_rest).append(v)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        every = np.concatenate([pos_v, np.asarray(neg_rest + neg_fn, float)])
        every = every[~np.isnan(every)]
        lo, hi = (float(every.min()), float(every.max())) if len(every) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        if len(pos_v):
            ax.hist(pos_v, bins, alpha=0.5, density=True, label="positives")
        ax.hist(neg_rest, bins, alpha=0.5, density=True, label="negatives")
        if neg_fn:
            ax.hist(neg_fn, bins, alpha=0.7, density=True, label="false negatives")
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
        figs.append(
            Figure(
                "scores", "Score distributions: positives, negatives, false negatives", _png(fig)
            )
        )
    else:
        notes.append(
            "This collection carries no retrieval scores (mining or BGE `neg_scores` add "
            "them), so there is no score distribution plot."
        )
    return figs, notes


def _reasoning(content: str | None) -> str:
    """The judge's words before its verdict (RLHN answers reason first), or the whole answer."""
    if not content:
        return ""
    cut = content.find("<verdict>")
    words = content[:cut] if cut > 0 else content
    return words.replace("<thinking>", "").replace("</thinking>", "").strip()


def _answers(d: ReportData, keys: list[str]) -> dict[str, str]:
    from trueneg.judge import CACHE_FILE, Cache

    named = (d.judge_summary or {}).get("cache")
    f = Path(named) if named else d.collection.path / CACHE_FILE
    if not f.is_file() or not keys:
        return {}
    with Cache(f) as c:
        return {k: a.content or "" for k, a in c.get_many(keys).items()}


def _samples(d: ReportData, t: Any, n: int = 6) -> list[dict[str, str]]:
    """Up to ``n`` judged pairs of each label that matters ("better": a false negative by RLHN's
    rule; "worse": relevant, but below the positive; dedup's free false negatives), with ids,
    every stage's verdict on the pair (agreement) and the deciding judge's reasoning."""
    coll = d.collection
    if not len(t):
        return []
    text = coll.passages["text"].combine_chunks()
    docid = coll.passages["docid"].combine_chunks()
    q = coll.queries["text"].combine_chunks()
    qid_orig = coll.queries["query_id"].combine_chunks()
    pos = coll.examples["positives"].combine_chunks()
    rows = t.to_pylist()
    by_pair: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault((r["example"], r["pid"]), []).append(r)
    picked: list[dict[str, Any]] = []
    for want in ("better", "worse", "false_negative"):
        got = 0
        for rs in by_pair.values():
            last = max(rs, key=lambda r: r["stage_index"])
            if last["label"] == want and got < n:
                picked.append(last)
                got += 1
    answers = _answers(d, sorted({r["request_key"] for r in picked if r.get("request_key")}))
    out = []
    for r in picked:
        first_pos = pos[r["example"]].as_py()[0]
        stages = sorted(by_pair[(r["example"], r["pid"])], key=lambda x: x["stage_index"])
        out.append(
            {
                "query": f"{q[r['qid']].as_py()} [{qid_orig[r['qid']].as_py() or r['qid']}]",
                "positive": f"{text[first_pos].as_py()} [{docid[first_pos].as_py() or first_pos}]",
                "negative": f"{text[r['pid']].as_py()} [{docid[r['pid']].as_py() or r['pid']}]",
                "verdict": f"{r['label']} ({r['stage']}{', ' + r['model'] if r.get('model') else ''})",
                "stages": " → ".join(f"{x['stage']}: {x['label'] or x['status']}" for x in stages),
                "reasoning": _reasoning(answers.get(r.get("request_key") or ""))
                or (r.get("reason") or ""),
            }
        )
    return out


def _agreement(t: Any) -> list[dict[str, Any]]:
    """For pairs two judge stages both labelled: how often each pair of labels occurred."""
    judged = [r for r in t.to_pylist() if r["stage"] != "dedup" and r["label"]]
    by_pair: dict[tuple[int, int], dict[str, str]] = {}
    order: dict[str, int] = {}
    for r in judged:
        by_pair.setdefault((r["example"], r["pid"]), {})[r["stage"]] = r["label"]
        order[r["stage"]] = r["stage_index"]
    names = sorted(order, key=order.__getitem__)
    if len(names) < 2:
        return []
    a, b = names[0], names[1]
    counts: dict[tuple[str, str], int] = {}
    for labels in by_pair.values():
        if a in labels and b in labels:
            k = (labels[a], labels[b])
            counts[k] = counts.get(k, 0) + 1
    total = sum(counts.values())
    return [
        {a: la, b: lb, "pairs": c, "share": f"{c / total:.1%}"}
        for (la, lb), c in sorted(counts.items(), key=lambda x: -x[1])
    ]


#: labels in the order the table shows them (RLHN's, ARHN's, a local scorer's, human labels')
LABEL_ORDER = (
    "better",
    "worse",
    "relabel",
    "ambiguous",
    "above_positive",
    "relevant",
    "uncertain",
    "not_relevant",
)


def labels_per_subset(coll: Any, t: Any) -> list[dict[str, Any]]:
    """For each subset and judge stage: how many judged pairs got each label (RLHN's
    better/worse beside ARHN's relabel/ambiguous), and how many got none (a failed call)."""
    judged = t.filter(pc.invert(pc.equal(t["stage"], "dedup"))) if len(t) else t
    if not len(judged):
        return []
    subset_of_q = coll.queries["subset"].to_pylist()
    subsets = [subset_of_q[q] for q in judged["qid"].to_pylist()]
    counts: dict[tuple[str, int, str], dict[str, int]] = {}
    for sub, st, si, lab in zip(
        subsets,
        judged["stage"].to_pylist(),
        judged["stage_index"].to_pylist(),
        judged["label"].to_pylist(),
        strict=True,
    ):
        c = counts.setdefault((sub, si, st), {})
        c[lab or "no label"] = c.get(lab or "no label", 0) + 1
    seen = {k for c in counts.values() for k in c}
    cols = [x for x in LABEL_ORDER if x in seen] + sorted(seen - set(LABEL_ORDER) - {"no label"})
    cols += ["no label"] if "no label" in seen else []
    return [
        {"subset": sub, "stage": st, **{k: c.get(k, 0) for k in cols}}
        for (sub, _, st), c in sorted(counts.items())
    ]


def _statuses(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = sorted({k for s in stages for k in s["statuses"]}, key=lambda k: (k != "ok", k))
    return [{"stage": s["name"], **{k: s["statuses"].get(k, 0) for k in names}} for s in stages]


def _clip(s: str, n: int = 280) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> tuple[str, str]:
    h = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    h += "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    h += "</table>"
    md = "| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |\n"
    md += "".join(
        "| "
        + " | ".join(str(r.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in cols)
        + " |\n"
        for r in rows
    )
    return h, md


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#1f2933}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #cbd2d9;padding:4px 8px;
vertical-align:top;text-align:left;max-width:420px;overflow-wrap:anywhere}p{overflow-wrap:anywhere}th{background:#f0f4f8}img{max-width:100%}.cap{color:#616e7c;font-size:13px}"""

CHECK_IMAGES = """<script>window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images',im.length);document.body.setAttribute('data-images-loaded',ok);});</script>"""


def write_report(d: ReportData, out_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ PNGs) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = judgments.load(d.collection.path)
    pairs = false_negative_pairs(t)
    figs, notes = _figures(d, t, pairs)
    notes = [*d.notes, *notes]
    h = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(d.title)}</title>"
        f"<style>{CSS}</style>{CHECK_IMAGES}</head><body><h1>{html.escape(d.title)}</h1>"
    ]
    md = [f"# {d.title}\n"]
    coll = d.collection
    c = coll.manifest["counts"]
    line = f"{c['examples']:,} examples, {c['queries']:,} queries, {c['passages']:,} passages ({coll.source_format})"
    h.append(f"<p>{html.escape(line)}</p>")
    md.append(line + "\n")
    js = d.judge_summary
    if js:
        rows = [
            {
                "stage": s["name"],
                "model": s["model"],
                "calls": s["calls"],
                "cached": s["cache_hits"],
                "sent": s["sent"],
                "failed": s["failed"],
                "flagged calls": s["flagged_calls"],
                "false negatives": s["false_negatives"],
                "cost USD": f"{s['cost_usd']:.4f}",
            }
            for s in js["stages"]
        ]
        th, tm = _table(rows, list(rows[0]))
        per = js.get("cost_per_false_negative")
        summary = (
            f"Judge: {js['false_negatives']:,} false negatives in {js['examples_with_false_negatives']:,} "
            f"examples; cost ${js['cost_usd']:.4f}"
            + (f" (${per:.4f} per false negative)" if per else "")
        )
        h += ["<h2>Judge cascade</h2>", f"<p>{html.escape(summary)}</p>", th]
        md += ["## Judge cascade\n", summary + "\n", tm]
        st_rows = _statuses(js["stages"])
        if st_rows and len(st_rows[0]) > 1:
            sh, sm = _table(st_rows, list(st_rows[0]))
            h += ["<h3>Answer statuses</h3>", sh]
            md += ["### Answer statuses\n", sm]
        lab = labels_per_subset(coll, t)
        if lab:
            lh, lm = _table(lab, list(lab[0]))
            h += ["<h3>Labels per subset and stage</h3>", lh]
            md += ["### Labels per subset and stage\n", lm]
        agree = _agreement(t)
        if agree:
            ah, am = _table(agree, list(agree[0]))
            h += ["<h3>Stage agreement (pairs both stages labelled)</h3>", ah]
            md += ["### Stage agreement (pairs both stages labelled)\n", am]
    for f in figs:
        (out / f"{f.name}.png").write_bytes(f.png)
        b64 = base64.b64encode(f.png).decode()
        h.append(
            f"<h2>{html.escape(f.title)}</h2><img alt='{html.escape(f.title)}' src='data:image/png;base64,{b64}'>"
        )
        md.append(f"## {f.title}\n\n![{f.title}]({f.name}.png)\n")
        if f.caption:
            h.append(f"<p class='cap'>{html.escape(f.caption)}</p>")
            md.append(f"_{f.caption}_\n")
    if d.fixes:
        rows = [
            {
                "strategy": r["strategy"],
                "examples before": r["examples_before"],
                "after": r["examples_after"],
                "false negatives": r["false_negatives"],
                "moved to positives": r["moved_to_positives"],
                "dropped (> k)": r["dropped_for_threshold"],
                "ambiguous dropped": r.get("dropped_ambiguous", 0),
                "k": r["max_false_negatives"],
                "exempt": ", ".join(r["exempt_subsets"]) or "-",
            }
            for r in d.fixes
        ]
        th, tm = _table(rows, list(rows[0]))
        h += ["<h2>Fixed collections</h2>", th]
        md += ["## Fixed collections\n", tm]
        per = [
            {
                "subset": s["subset"],
                "examples": s["examples_before"],
                "with false negatives": s["examples_with_false_negatives"],
                "rate": f"{s['false_negative_rate']:.1%}",
                "false negatives": s["false_negatives"],
            }
            for s in d.fixes[0]["per_subset"]
        ]
        th, tm = _table(per, list(per[0]))
        h += ["<h3>Per subset</h3>", th]
        md += ["### Per subset\n", tm]
    if d.dedup:
        dd = d.dedup
        rows = [{"what": k, **{kk: v for kk, v in dd[k].items()}} for k in ("queries", "passages")]
        th, tm = _table(rows, list(rows[0]))
        line = (
            f"LSH {dd['bands']} x {dd['rows']}; free false negatives (a negative duplicating its own "
            f"positive): {dd['free_false_negatives']:,}"
        )
        curve = [
            {"Jaccard": f"{c['jaccard']:.2f}", "P(candidate)": f"{c['p_candidate']:.2f}"}
            for c in dd["s_curve"]
        ]
        ch, cm = _table(curve, ["Jaccard", "P(candidate)"])
        h += ["<h2>Dedup</h2>", f"<p>{html.escape(line)}</p>", th, "<h3>LSH S-curve</h3>", ch]
        md += ["## Dedup\n", line + "\n", tm, "### LSH S-curve\n", cm]
    for r in d.experiments:
        from trueneg.experiment import plot_png
        from trueneg.experiment import rows as experiment_rows

        table = experiment_rows(r)
        th, tm = _table(table, list(table[0]))
        fn = r["false_negatives"]
        line = (
            f"{len(r['settings']['seeds'])} seed(s); false negatives are "
            f"{fn['share_of_mined_negatives']:.1%} of the mined negatives; judge "
            f"{r['settings']['judge'] if isinstance(r['settings']['judge'], str) else 'from config'}"
            + (
                f" (precision {r['judge_quality']['precision']:.3f}, recall "
                f"{r['judge_quality']['recall']:.3f}, kappa {r['judge_quality']['kappa']:.3f})"
                if "kappa" in r["judge_quality"]
                else ""
            )
        )
        title = f"Experiment: {r['dataset']}"
        name = f"experiment-{r['dataset']}"
        png = plot_png(r)
        (out / f"{name}.png").write_bytes(png)
        b64 = base64.b64encode(png).decode()
        h += [
            f"<h2>{html.escape(title)}</h2>",
            f"<p>{html.escape(line)}</p>",
            th,
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>",
        ]
        md += [f"## {title}\n", line + "\n", tm, f"![{title}]({name}.png)\n"]
    if d.eci:
        rows = [
            {
                "collection": Path(r["collection"]).name,
                "examples": f"{r['examples']:,}",
                "negatives": f"{r['negatives']:,}",
                "IC": f"{r['information_capacity']:.3f}",
                "signal": f"{r['signal']:.3f}",
                "safety": f"{r['safety']:.3f}",
                "DE": f"{r['efficiency']:.3f}",
                "ECI": f"{r['eci']:.3f}",
                "unsafe negatives": f"{r['unsafe_share']:.1%}",
            }
            for r in d.eci
        ]
        th, tm = _table(rows, list(rows[0]))
        line = (
            "Effective Contrastive Information of each set's hard negatives, before training: "
            "IC = ln(1 + negatives) times DE, the harmonic mean of signal (hardness against an "
            "in-batch baseline) and safety (margin below the weakest positive)."
        )
        h += ["<h2>Hard-negative quality (ECI)</h2>", f"<p>{html.escape(line)}</p>", th]
        md += ["## Hard-negative quality (ECI)\n", line + "\n", tm]
    if d.prefilters:
        from trueneg.judge.prefilter import plot_png as prefilter_png

        rows = [
            {
                "scorer": c["scorer"],
                "reference false negatives": c["reference_false_negatives"],
                "calls": c["calls"],
                "best margin (>= 90% passed)": "-"
                if not c["best_at_90"]
                else f"{c['best_at_90']['margin']:+.2f}",
                "passed": "-" if not c["best_at_90"] else f"{c['best_at_90']['passed']:.1%}",
                "calls sent": "-" if not c["best_at_90"] else f"{c['best_at_90']['calls']:.1%}",
            }
            for c in d.prefilters
        ]
        th, tm = _table(rows, list(rows[0]))
        png = prefilter_png(d.prefilters)
        (out / "prefilter.png").write_bytes(png)
        b64 = base64.b64encode(png).decode()
        title = "Local scorer as a pre-filter"
        h += [
            f"<h2>{title}</h2>",
            th,
            f"<img alt='{title}' src='data:image/png;base64,{b64}'>",
        ]
        md += [f"## {title}\n", tm, f"![{title}](prefilter.png)\n"]
    samples = _samples(d, t)
    if samples:
        rows = [{k: _clip(v) for k, v in s.items()} for s in samples]
        th, tm = _table(rows, ["query", "positive", "negative", "verdict", "stages", "reasoning"])
        h += ["<h2>Sample judged pairs (better, worse, dedup)</h2>", th]
        md += ["## Sample judged pairs (better, worse, dedup)\n", tm]
    if notes:
        h.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        )
        md.append("## Notes\n" + "".join(f"- {n}\n" for n in notes))
    h.append("</body></html>")
    with atomic_file(out / "report.html") as fh:
        fh.write("\n".join(h).encode())
    with atomic_file(out / "report.md") as fh:
        fh.write("\n".join(md).encode())
    return out / "report.html"


def load_json(p: Path) -> dict[str, Any] | None:
    return orjson.loads(p.read_bytes()) if p.is_file() else None
