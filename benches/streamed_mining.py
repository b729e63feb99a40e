"""Streamed mining at scale: synthetic 384-d f16 embeddings on disk (default 2M passages x 200k
queries, each query a noisy copy of its positive passage), mined by
:func:`trueneg.streamed.select_streamed` in a fresh process under a memory limit.

Three runs, each its own process, peak RSS = the child's VmHWM (``/proc/PID/status``):

1. ``killed``: under ``--memory-limit`` (default 8GB), SIGKILLed once ``--kill-at`` of its blocks
   are saved;
2. ``resumed``: the same command again, resuming from the saved blocks;
3. ``uninterrupted``: under ``--reference-limit`` (default 3GB: the corpus in shards).

The output arrays of 1+2 must equal those of 3 byte for byte (their SHA-256 is compared): a kill
does not change the output, and neither does the memory limit. Writes a Markdown summary
(``--out``, default ``benches/STREAMED.md``).

    python benches/streamed_mining.py                         # ~35 min on 2 Zen 4 cores
    python benches/streamed_mining.py --passages 200000 --queries 20000   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import hashlib, json, sys, time
import numpy as np
from trueneg.streamed import select_streamed
q = np.load(sys.argv[1], mmap_mode="r")
c = np.load(sys.argv[2], mmap_mode="r")
pos = np.load(sys.argv[3])
t = time.perf_counter()
sel = select_streamed(q, c, [[int(p)] for p in pos], work_dir=sys.argv[4],
                      memory_limit=sys.argv[5], num_negatives=7, range_max=100,
                      relative_margin=0.05)
dt = time.perf_counter() - t
h = hashlib.sha256()
for f in ("offsets", "ids", "scores", "eligible", "band_offsets", "band_ids", "band_scores"):
    a = getattr(sel, f)
    h.update(f.encode() + str(a.dtype).encode() + a.tobytes())
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": dt, "sha256": h.hexdigest(), "negatives": int(len(sel.ids)),
                  "peak_rss_mb": hwm / 1024}))
"""


def vm_hwm_mb(pid: int) -> float:
    """Peak RSS of a live process (VmHWM: its own, unlike ru_maxrss, which on Linux keeps the
    parent's RSS at fork across exec)."""
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_data(folder: Path, n_passages: int, n_queries: int, dim: int = 384) -> None:
    """f16 .npy files written a chunk at a time (this process stays small)."""
    rng = np.random.default_rng(0)
    chunk = 250_000
    c = np.lib.format.open_memmap(folder / "c.npy", "w+", np.float16, (n_passages, dim))
    for a in range(0, n_passages, chunk):
        x = rng.standard_normal((min(chunk, n_passages - a), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        c[a : a + len(x)] = x
    c.flush()
    pos = rng.choice(n_passages, n_queries, replace=False)
    np.save(folder / "pos.npy", pos)
    q = np.lib.format.open_memmap(folder / "q.npy", "w+", np.float16, (n_queries, dim))
    for a in range(0, n_queries, chunk):
        p = np.sort(pos[a : a + chunk])
        order = np.argsort(pos[a : a + chunk])
        rows = np.empty((len(p), dim), np.float32)
        rows[order] = c[p]
        x = rows + 0.05 * rng.standard_normal(rows.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q[a : a + len(x)] = x
    q.flush()
    del c, q


def run(folder: Path, work: Path, limit: str, kill_at: float | None = None) -> dict[str, object]:
    args = [str(folder / f) for f in ("q.npy", "c.npy", "pos.npy")]
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"}
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args, str(work), limit],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    if kill_at is not None:
        while p.poll() is None:
            plan = work / "plan.json"
            if plan.is_file():
                meta = json.loads(plan.read_text())["plan"]
                total = -(-meta["n_queries"] // meta["query_rows"])
                done = len(list(work.glob("block-*.npz")))
                if done >= kill_at * total:
                    peak = vm_hwm_mb(p.pid)
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    return {
                        "seconds": time.perf_counter() - t,
                        "blocks_saved": done,
                        "blocks": total,
                        "peak_rss_mb": peak,
                        "killed": True,
                    }
            time.sleep(0.2)
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"mining run failed ({p.returncode})")
    r: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    r["wall_seconds"] = time.perf_counter() - t
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--passages", type=int, default=2_000_000)
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--reference-limit", default="3GB")
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--no-reference", action="store_true", help="skip the uninterrupted run")
    ap.add_argument("--dir", help="data + work folder (default: a temporary one)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("STREAMED.md")))
    a = ap.parse_args()
    folder = Path(a.dir or tempfile.mkdtemp(prefix="trueneg-streamed-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "c.npy").is_file():
        t = time.perf_counter()
        make_data(folder, a.passages, a.queries)
        print(f"data: {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    shutil.rmtree(folder / "w", ignore_errors=True)
    killed = run(folder, folder / "w", a.memory_limit, kill_at=a.kill_at)
    rows.append(("killed (SIGKILL)", a.memory_limit, killed))
    print("killed", killed, flush=True)
    resumed = run(folder, folder / "w", a.memory_limit)
    rows.append(("resumed", a.memory_limit, resumed))
    print("resumed", resumed, flush=True)
    ref = None
    if not a.no_reference:
        shutil.rmtree(folder / "w-ref", ignore_errors=True)
        ref = run(folder, folder / "w-ref", a.reference_limit)
        rows.append(("uninterrupted", a.reference_limit, ref))
        print("reference", ref, flush=True)
    same = ref is None or ref["sha256"] == resumed["sha256"]
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    lines = [
        f"Streamed mining, {a.passages:,} passages x {a.queries:,} queries, 384-d f16 on disk "
        f"(memory-mapped), top-100 + selection of 7; {cpu}, {os.cpu_count()} cores.",
        "",
        "| run | memory limit | seconds | peak RSS | blocks | output SHA-256 |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, limit, r in rows:
        blocks = f"{r['blocks_saved']} of {r['blocks']} saved" if r.get("killed") else ""
        digest = str(r.get("sha256", ""))[:16]
        lines.append(
            f"| {name} | {limit} | {float(r['seconds']):.0f} | {float(r['peak_rss_mb']) / 1024:.2f} GB "
            f"| {blocks} | {digest} |"
        )
    lines += [
        "",
        "Killed + resumed output identical to the uninterrupted one: "
        + ("yes" if same and ref is not None else "not compared" if ref is None else "**NO**"),
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    digest = hashlib.sha256(Path(a.out).read_bytes()).hexdigest()[:8]
    print(f"wrote {a.out} ({digest})")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
