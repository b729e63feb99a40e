"""Evaluation: BEIR-format retrieval (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) with an
encoder and the exact search kernel, optional cross-encoder reranking of the top 100, and
nDCG@10 / Recall@100 / MRR@10 computed by pytrec_eval (pytrec-eval-terrier); per dataset and
averaged, as in the paper's tables. And judge-vs-human agreement: Cohen's kappa, precision and
recall of "relevant"."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trueneg._io import iter_jsonl, type_name
from trueneg.exceptions import InputError, TruenegError
from trueneg.formats.beir import BeirSet, load_beir, read_qrels  # noqa: F401  (evaluation API)

#: pytrec_eval measures and the names reported
MEASURES = {"ndcg_cut_10": "nDCG@10", "recall_100": "Recall@100", "recip_rank": "MRR@10"}


def metrics(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, Any]:
    """Mean nDCG@10, Recall@100, MRR@10 over the queries that have qrels and a ranking
    (pytrec_eval; MRR@10 = reciprocal rank on the run cut to its top 10), plus per query."""
    try:
        import pytrec_eval
    except ImportError:
        raise TruenegError(
            "evaluation needs pytrec-eval-terrier: pip install 'trueneg[train]'"
        ) from None
    qrels = {q: dict(d) for q, d in qrels.items() if q in run}
    if not qrels:
        raise InputError("no query of the run has qrels")
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    per = ev.evaluate({q: dict(run[q]) for q in qrels})
    # trec_eval's order (score descending, ties by docid descending), so the rank-10 cut of
    # MRR@10 keeps the same passages as nDCG@10
    top10 = {
        q: dict(sorted(run[q].items(), key=lambda x: (x[1], x[0]), reverse=True)[:10])
        for q in qrels
    }
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for q in per:
        per[q]["recip_rank"] = rr[q]["recip_rank"]
    out: dict[str, Any] = {
        name: float(np.mean([per[q][m] for q in per])) for m, name in MEASURES.items()
    }
    out["queries"] = len(per)
    out["per_query"] = per
    return out


def search(
    data: BeirSet, encoder: Any, k: int = 100, *, ignore_identical_ids: bool = True
) -> dict[str, dict[str, float]]:
    """Top-``k`` run with the encoder and the exact kernel; a passage with the query's own id is
    dropped (BEIR's default, for sets such as ArguAna and Quora)."""
    qe = encoder.encode(data.query_texts, "query", desc=f"embed {data.name} queries")
    de = encoder.encode(data.doc_texts, "passage", desc=f"embed {data.name} corpus")
    return rank(data, qe, de, k, ignore_identical_ids=ignore_identical_ids)


def rank(
    data: BeirSet, qe: Any, de: Any, k: int = 100, *, ignore_identical_ids: bool = True
) -> dict[str, dict[str, float]]:
    """The top-``k`` run of precomputed embeddings (queries in ``data.query_ids`` order, passages
    in ``data.doc_ids`` order) by the exact kernel, BEIR's identical-id rule applied."""
    from trueneg.mine import exact_topk

    kk = min(len(data.doc_ids), k + (1 if ignore_identical_ids else 0))
    idx, sc = exact_topk(qe, de, kk)
    run: dict[str, dict[str, float]] = {}
    for qi, q in enumerate(data.query_ids):
        hits = {}
        for j, s in zip(idx[qi].tolist(), sc[qi].tolist(), strict=True):
            d = data.doc_ids[j]
            if ignore_identical_ids and d == q:
                continue
            hits[d] = float(s)
            if len(hits) == k:
                break
        run[q] = hits
    return run


def rerank(
    data: BeirSet, run: Mapping[str, Mapping[str, float]], reranker: Any, top: int = 100
) -> dict[str, dict[str, float]]:
    """The run's first ``top`` passages of each query re-scored by a cross-encoder."""
    doc = dict(zip(data.doc_ids, data.doc_texts, strict=True))
    qtext = dict(zip(data.query_ids, data.query_texts, strict=True))
    pairs = [
        (q, d)
        for q, hits in run.items()
        for d, _ in sorted(hits.items(), key=lambda x: -x[1])[:top]
    ]
    scores = reranker.score([qtext[q] for q, _ in pairs], [doc[d] for _, d in pairs])
    out: dict[str, dict[str, float]] = {q: {} for q in run}
    for (q, d), s in zip(pairs, scores.tolist(), strict=True):
        out[q][d] = float(s)
    return out


def evaluate_beir(
    paths: Sequence[str | Path],
    encoder: Any,
    *,
    split: str = "test",
    reranker: Any = None,
    rerank_top: int = 100,
) -> dict[str, Any]:
    """Every dataset's metrics and the average over datasets (the paper's table layout)."""
    sets: dict[str, Any] = {}
    for p in paths:
        data = load_beir(p, split)
        run = search(data, encoder)
        m = metrics(data.qrels, run)
        entry = {"retrieval": {k: v for k, v in m.items() if k != "per_query"}}
        if reranker is not None:
            r = metrics(data.qrels, rerank(data, run, reranker, rerank_top))
            entry["reranked"] = {k: v for k, v in r.items() if k != "per_query"}
        sets[data.name] = entry
    avg = {
        kind: {
            name: float(np.mean([s[kind][name] for s in sets.values()]))
            for name in MEASURES.values()
        }
        for kind in ("retrieval", "reranked")
        if all(kind in s for s in sets.values())
    }
    return {"datasets": sets, "average": avg}


def table(result: Mapping[str, Any], kind: str = "retrieval") -> str:
    """A Markdown table: one row per dataset and the average."""
    names = list(MEASURES.values())
    lines = ["| dataset | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for d, s in result["datasets"].items():
        if kind in s:
            lines.append(f"| {d} | " + " | ".join(f"{s[kind][n]:.4f}" for n in names) + " |")
    if kind in result["average"]:
        a = result["average"][kind]
        lines.append("| **average** | " + " | ".join(f"{a[n]:.4f}" for n in names) + " |")
    return "\n".join(lines)


def agreement(judge: Sequence[bool], human: Sequence[bool]) -> dict[str, float]:
    """Cohen's kappa between two binary labelings, and the judge's precision and recall of
    "relevant" taking the human labels as truth."""
    j = np.asarray(judge, bool)
    h = np.asarray(human, bool)
    if j.shape != h.shape or j.ndim != 1 or len(j) == 0:
        raise InputError("agreement needs two equally long, non-empty label lists")
    n = len(j)
    tp, fp = int((j & h).sum()), int((j & ~h).sum())
    fn, tn = int((~j & h).sum()), int((~j & ~h).sum())
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    kappa = 1.0 if pe == 1 else (po - pe) / (1 - pe)
    return {
        "n": n,
        "kappa": kappa,
        "accuracy": po,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _truthy(v: Any, path: Path, line: int, name: str, threshold: int) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "yes", "relevant"):
        return True
    if s in ("false", "no", "not_relevant", "irrelevant"):
        return False
    try:
        x = float(s)
    except ValueError:
        raise InputError(f"field {name}: not a label: {v!r}", path=str(path), line=line) from None
    if x != x or x in (float("inf"), float("-inf")):  # nan is no label, never "not relevant"
        raise InputError(f"field {name}: not a label: {v!r}", path=str(path), line=line)
    return x >= threshold


def load_labels(
    path: str | Path, *, judge: str = "judge", human: str = "human", threshold: int = 1
) -> tuple[list[bool], list[bool]]:
    """Paired labels from a JSONL, CSV or TSV file with a judge column and a human column
    (booleans, yes/no, or grades: relevant when >= ``threshold``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("labels file not found", path=str(p))
    rows: list[tuple[int, Mapping[str, Any]]]
    if p.suffix in (".jsonl", ".json"):
        rows = []
        for n, value, err in iter_jsonl(p):
            if err is not None:
                raise err
            if not isinstance(value, dict):
                raise InputError(
                    f"expected a JSON object with {judge!r} and {human!r}, got {type_name(value)}",
                    path=str(p),
                    line=n,
                )
            rows.append((n, value))
    else:
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"not valid UTF-8 (bad byte 0x{raw[e.start]:02x}; save it as UTF-8)",
                path=str(p),
                line=raw[: e.start].count(b"\n") + 1,
            ) from None
        rd = csv.DictReader(
            io.StringIO(text, newline=""), delimiter="\t" if p.suffix == ".tsv" else ","
        )
        rows = [(n, r) for n, r in enumerate(rd, 2)]
    js, hs = [], []
    for n, r in rows:
        for name in (judge, human):
            if r.get(name) in (None, ""):
                raise InputError(f"missing field {name!r}", path=str(p), line=n)
        js.append(_truthy(r[judge], p, n, judge, threshold))
        hs.append(_truthy(r[human], p, n, human, threshold))
    return js, hs


def write_result(result: Mapping[str, Any], out: str | Path) -> None:
    from trueneg._io import atomic_file

    with atomic_file(out, "w") as f:
        json.dump(result, f, indent=2)
