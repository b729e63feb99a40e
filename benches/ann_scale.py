"""ANN at scale: usearch HNSW (through trueneg's ``ann_index`` / ``ann_search``, candidates
re-scored exactly) beside faiss ``IndexHNSWFlat`` on the same 1M passages: build time, memory,
queries/s and recall@100 against the exact top-100 (trueneg's exact kernel).

The data are synthetic (no 1M-passage embedding set installs offline): 384-d rows of intrinsic
dimension 32 (a random linear map of a 32-d Gaussian plus a little noise, L2-normalised), as
sentence embeddings have a low intrinsic dimension; queries are noisy copies of random passages. Each side runs in a fresh process; memory = growth of the
process's peak RSS (VmHWM) over its RSS before building (the index, plus the side's copies of the vectors).

    python benches/ann_scale.py                    # 1M passages, 2,000 queries
    python benches/ann_scale.py --passages 200000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
side, folder, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
def status(key):  # kB, this process only (ru_maxrss keeps the parent's RSS at fork on Linux)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
M, EF_ADD, EF_SEARCH = 32, 128, 256
c = np.load(folder + "/c.npy"); q = np.load(folder + "/q.npy")
base = status("VmRSS")
if side == "usearch":
    from trueneg.mine import AnnConfig, ann_index, ann_search
    cfg = AnnConfig(dtype="f16", connectivity=M, expansion_add=EF_ADD, expansion_search=EF_SEARCH)
    t = time.perf_counter(); index = ann_index(c, cfg); build = time.perf_counter() - t
    mem = status("VmHWM") - base
    t = time.perf_counter(); ids, _ = ann_search(index, q, c, k, cfg); search = time.perf_counter() - t
elif side == "usearch-f32":
    from trueneg.mine import AnnConfig, ann_index, ann_search
    cfg = AnnConfig(dtype="f32", connectivity=M, expansion_add=EF_ADD, expansion_search=EF_SEARCH)
    t = time.perf_counter(); index = ann_index(c, cfg); build = time.perf_counter() - t
    mem = status("VmHWM") - base
    t = time.perf_counter(); ids, _ = ann_search(index, q, c, k, cfg); search = time.perf_counter() - t
elif side == "faiss":
    import faiss
    index = faiss.IndexHNSWFlat(c.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_ADD
    t = time.perf_counter(); index.add(c); build = time.perf_counter() - t
    mem = status("VmHWM") - base
    index.hnsw.efSearch = max(EF_SEARCH, k)
    t = time.perf_counter(); _, ids = index.search(q, k); search = time.perf_counter() - t
else:
    from trueneg.mine import exact_topk
    t = time.perf_counter(); ids, _ = exact_topk(q, c, k); search = time.perf_counter() - t
    build, mem = 0.0, 0
np.save(folder + f"/ids-{side}.npy", np.asarray(ids, np.int64))
print(json.dumps({"build_s": build, "search_s": search, "build_mb": mem / 1024}))
"""


def make_data(folder: Path, n: int, nq: int, dim: int = 384, latent: int = 32) -> None:
    """Rows of low intrinsic dimension, as sentence embeddings have: a ``latent``-d Gaussian
    mapped to ``dim`` by a fixed random linear map, plus a little isotropic noise, L2-normalised
    (pure 384-d noise has no neighbourhoods: every ANN index scores ~0.5 recall on it)."""
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    c = np.empty((n, dim), np.float32)
    for a in range(0, n, 200_000):
        m = min(200_000, n - a)
        x = rng.standard_normal((m, latent), dtype=np.float32) @ proj
        x += 0.1 * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim) * np.sqrt(latent)
        c[a : a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = c[rng.choice(n, nq, replace=False)] + 0.02 * rng.standard_normal(
        (nq, dim), dtype=np.float32
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.save(folder / "c.npy", c)
    np.save(folder / "q.npy", q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--sides", default="exact,usearch,faiss")
    ap.add_argument("--dir")
    a = ap.parse_args()
    folder = Path(a.dir or tempfile.mkdtemp(prefix="trueneg-ann-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "c.npy").is_file():
        make_data(folder, a.passages, a.queries)
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    res = {}
    for side in ["exact", *[s for s in a.sides.split(",") if s != "exact"]]:
        r = subprocess.run(
            [sys.executable, "-c", CHILD, side, str(folder), str(a.k)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if r.returncode != 0:
            print(f"{side}: failed\n{r.stderr[-2000:]}", flush=True)
            continue
        res[side] = json.loads(r.stdout.strip().splitlines()[-1])
        print(side, res[side], flush=True)
    exact = np.load(folder / "ids-exact.npy")
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    lines = [
        f"HNSW at {a.passages:,} passages (384-d synthetic, intrinsic dimension 32), {a.queries:,} queries, "
        f"recall@{a.k} against the exact top-{a.k}; M = 32, ef_construction = 128, ef_search = "
        f"256; {cpu}, {os.cpu_count()} cores.",
        "",
        "| side | build s | build memory MB | queries/s | recall@100 |",
        "|---|---:|---:|---:|---:|",
    ]
    for side, r in res.items():
        ids = np.load(folder / f"ids-{side}.npy")
        recall = np.mean([len(set(x) & set(y)) / a.k for x, y in zip(ids, exact, strict=True)])
        qps = a.queries / r["search_s"]
        lines.append(
            f"| {side} | {r['build_s']:.0f} | {r['build_mb']:.0f} | {qps:,.0f} | {recall:.4f} |"
        )
    print("\n".join(lines))
    (folder / "RESULT.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
