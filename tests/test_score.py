"""ECI (``trueneg score-negatives``): the Rust kernel against an independent NumPy computation of
the documented formula on real embeddings (all-MiniLM-L6-v2 over real FiQA text from the RLHN
sample), the CLI and the report, Spearman's correlation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trueneg import Collection, ingest
from trueneg.data import rlhn_sample_stage1
from trueneg.exceptions import InputError
from trueneg.score import ECI_TERMS, ScoreConfig, eci_of, spearman

pytest.importorskip("torch")

ENV = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def fiqa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Collection, np.ndarray, np.ndarray]:
    from trueneg.models import Encoder, EncoderConfig

    coll = ingest([rlhn_sample_stage1()[0]], tmp_path_factory.mktemp("c") / "c")
    qe, pe = Encoder(EncoderConfig()).encode_collection(coll)
    return coll, qe, pe


def _reference(coll: Collection, qe: np.ndarray, pe: np.ndarray, delta: float, in_batch: int):
    """The formula of trueneg.score, written again in NumPy (float64): per negative, hardness and
    safety against each positive, averaged."""
    q = qe / np.linalg.norm(qe, axis=1, keepdims=True)
    p = pe / np.linalg.norm(pe, axis=1, keepdims=True)
    ex = coll.examples
    qids = ex["qid"].to_pylist()
    poss, negs = ex["positives"].to_pylist(), ex["negatives"].to_pylist()
    n = len(qids)
    out = {k: [] for k in (*ECI_TERMS, "baseline")}
    per_neg = {"hardness": [], "negative_safety": []}
    for e in range(n):
        if not poss[e] or not negs[e]:
            for k in out:
                out[k].append(0.0 if k != "baseline" else np.nan)
            per_neg["hardness"] += [0.0] * len(negs[e])
            per_neg["negative_safety"] += [0.0] * len(negs[e])
            continue
        qv = q[qids[e]]
        sps = [float(qv @ p[x]) for x in poss[e]]
        others = [o for o in [(e + j) % n for j in range(1, n)] if qids[o] != qids[e] and poss[o]][
            :in_batch
        ]
        b = float(np.mean([qv @ p[poss[o][0]] for o in others])) if others else 0.0
        s = np.array([qv @ p[x] for x in negs[e]])
        h = np.mean(
            [np.clip((s - b) / (sp - b), 0, 1) if sp > b else np.zeros_like(s) for sp in sps],
            axis=0,
        )
        sig = np.mean([np.clip((sp - s) / (delta * abs(sp)), 0, 1) for sp in sps], axis=0)
        big_s, big_sig = h.mean(), sig.mean()
        de = 2 * big_s * big_sig / (big_s + big_sig) if big_s + big_sig > 0 else 0.0
        ic = np.log(1 + len(negs[e]))
        for k, v in zip(
            (*ECI_TERMS, "baseline"), (ic, big_s, big_sig, de, ic * de, b), strict=True
        ):
            out[k].append(v)
        per_neg["hardness"] += h.tolist()
        per_neg["negative_safety"] += sig.tolist()
    return {k: np.asarray(v) for k, v in (out | per_neg).items()}


@pytest.mark.parametrize(("delta", "in_batch"), [(0.05, 16), (0.2, 3)])
def test_eci_equals_an_independent_numpy_computation(fiqa, delta: float, in_batch: int) -> None:
    coll, qe, pe = fiqa
    summary, terms = eci_of(coll, qe, pe, ScoreConfig(delta=delta, in_batch=in_batch))
    ref = _reference(coll, qe, pe, delta, in_batch)
    for k, v in ref.items():
        np.testing.assert_allclose(terms[k], v, atol=2e-5, err_msg=k)
    assert summary.eci == pytest.approx(ref["eci"].mean(), abs=1e-5)
    assert summary.examples == 25 and summary.negatives == len(terms["hardness"])
    # real data: every term in range, and some negatives are unsafe (FiQA holds false negatives)
    assert 0 < summary.signal < 1 and 0 < summary.safety <= 1
    assert 0 < summary.unsafe_share < 1
    assert summary.per_subset and summary.per_subset[0]["examples"] == 25
    # the sample has examples with several positives: the averaging is exercised
    assert max(len(x) for x in coll.examples["positives"].to_pylist()) > 1


def test_what_moves_eci(fiqa, tmp_path: Path) -> None:
    """Dropping every unsafe negative makes each remaining set safe (safety 1); relabelling the
    negatives above the positive lowers the weakest-positive reference of no example."""
    coll, qe, pe = fiqa
    _, terms = eci_of(coll, qe, pe)
    ex = coll.examples
    negs = ex["negatives"].to_pylist()
    flat_safe = terms["negative_safety"]
    keep, i = [], 0
    for row in negs:
        keep.append([p for j, p in enumerate(row) if flat_safe[i + j] == 1.0])
        i += len(row)
    import pyarrow as pa

    cols = {c: ex[c] for c in ex.column_names}
    cols["negatives"] = pa.array(keep, pa.list_(pa.uint32()))
    cols["neg_scores"] = pa.nulls(len(ex), pa.list_(pa.float64()))
    safe = coll.derive(tmp_path / "safe", pa.table(cols, schema=ex.schema), step="test")
    s2, t2 = eci_of(safe, qe, pe)
    nonempty = np.array([len(k) > 0 for k in keep])
    assert np.all(t2["safety"][nonempty] == 1.0) and s2.unsafe_share == 0.0
    # fewer negatives: lower information capacity wherever one was dropped
    dropped = np.array([len(k) < len(r) for k, r in zip(keep, negs, strict=True)])
    assert np.all(t2["information_capacity"][dropped] < terms["information_capacity"][dropped])


def test_config_and_shapes(fiqa) -> None:
    coll, qe, pe = fiqa
    with pytest.raises(InputError, match="delta"):
        ScoreConfig(delta=0)
    with pytest.raises(ValueError, match="passage row"):
        eci_of(coll, qe, pe[:3])


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)
    assert spearman([1, 2], [2, 1]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_cli_and_report(tmp_path: Path) -> None:
    src = rlhn_sample_stage1()[0]
    c = tmp_path / "c"
    ingest([src], c)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "fix",
            str(c),
            "-o",
            str(tmp_path / "f"),
            "--strategy",
            "remove-hn",
        ],
        check=True,
        env=ENV,
        capture_output=True,
    )
    out = tmp_path / "eci.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "score-negatives",
            str(c),
            str(tmp_path / "f"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "| collection | examples | negatives | IC |" in r.stdout
    res = json.loads(out.read_text())["collections"]
    assert [Path(x["collection"]).name for x in res] == ["c", "f"]
    assert res[0]["eci"] == pytest.approx(res[1]["eci"])  # no judgments: the same sets
    rep = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "report",
            str(c),
            "-o",
            str(tmp_path / "rep"),
            "--eci",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Hard-negative quality (ECI)" in md and f"{res[0]['eci']:.3f}" in md
    inside = subprocess.run(
        [sys.executable, "-m", "trueneg", "score-negatives", str(c), "-o", str(c / "x.json")],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert inside.returncode == 1 and inside.stderr.startswith("error:")
