"""Streamed, resumable mining (trueneg.streamed): blocks of queries x shards of the corpus give
one call's selection; checkpoints resume a killed run to byte-identical output; memory plans."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from trueneg.exceptions import InputError
from trueneg.mine import Selection, select_negatives
from trueneg.streamed import (
    BlockPlan,
    int8_available,
    merge_topk,
    parse_memory,
    plan_blocks,
    select_streamed,
)

#: every array of a Selection, out_of_bounds included
FIELDS = tuple(f.name for f in dataclasses.fields(Selection))


def _bag_of_words(texts: list[str], dim: int = 256) -> np.ndarray:
    """Hashed bag-of-words rows of real texts, L2-normalised: real data with many exact ties."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            out[i, zlib.crc32(w.encode()) % dim] += 1.0
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


@pytest.fixture(scope="module")
def cisi(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from trueneg import ingest
    from trueneg.mine import query_positives
    from trueneg.texts import passage_texts

    coll = ingest([data_dir / "beir-cisi"], tmp_path_factory.mktemp("c") / "c")
    qids = coll.examples["qid"].to_numpy()
    return {
        "queries": _bag_of_words(coll.queries["text"].to_pylist()),
        "corpus": _bag_of_words(passage_texts(coll.passages)),
        "qids": qids,
        "positives": query_positives(qids, coll.examples["positives"].to_pylist()),
    }


def _same(a: object, b: object) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("sampling", ["top", "random"])
def test_blocks_and_shards_equal_one_call(
    cisi: dict[str, object], dtype: type, sampling: str
) -> None:
    q = np.asarray(cisi["queries"], dtype)
    c = np.asarray(cisi["corpus"], dtype)
    qids = np.asarray(cisi["qids"])
    pos = cisi["positives"]
    assert isinstance(pos, list)
    kw = {"num_negatives": 5, "relative_margin": 0.05, "sampling": sampling, "seed": 7}
    method = "int8" if int8_available() else "gemm"
    ref = select_negatives(q[qids], c, pos, method=method, **kw)  # type: ignore[arg-type]
    k = 100 + max(len(p) for p in pos)
    whole = plan_blocks(len(qids), len(c), c.shape[1], k, itemsize=c.itemsize)
    assert (whole.blocks, whole.shards) == (1, 1)
    # a limit that leaves room for a fraction of the corpus: several shards and blocks
    tight = whole.estimate_bytes
    while (
        plan_blocks(
            len(qids), len(c), c.shape[1], k, itemsize=c.itemsize, memory_limit=tight
        ).shards
        < 3
    ):
        tight -= 32 << 10
    sel = select_streamed(
        q, c, pos, query_rows=qids, memory_limit=tight, block_queries=97, method=method, **kw
    )
    if method == "int8":
        _same(sel, ref)  # the int8 path's scores do not depend on the cut: equal bit for bit
    else:  # gemm may round a score differently per shard: equal up to near ties
        assert (sel.ids == ref.ids).mean() > 0.99
        np.testing.assert_allclose(sel.scores, ref.scores, atol=1e-5)


def test_merge_topk_orders_like_the_kernel() -> None:
    rng = np.random.default_rng(3)
    k = 6
    a_sc = rng.integers(-3, 4, (50, k)).astype(np.float32) / 4  # many exact ties
    b_sc = rng.integers(-3, 4, (50, k)).astype(np.float32) / 4
    a_sc[:, 0], b_sc[:, 0] = 0.0, -0.0
    a_id = rng.permutation(1000)[: 50 * k].reshape(50, k).astype(np.int64)
    b_id = rng.permutation(np.arange(1000, 2000))[: 50 * k].reshape(50, k).astype(np.int64)
    b_id[0, 3], b_sc[0, 3] = -1, -np.inf
    ids, sc = merge_topk(a_id, a_sc, b_id, b_sc, k)
    for r in range(50):
        items = list(
            zip(np.r_[a_sc[r], b_sc[r]].tolist(), np.r_[a_id[r], b_id[r]].tolist(), strict=True)
        )
        # the kernel's order: f32 total order (0.0 above -0.0), then the lower id; -1 last
        want = sorted(
            items,
            key=lambda t: (-t[0], np.copysign(1, t[0]) < 0, t[1] if t[1] >= 0 else 1 << 62),
        )[:k]
        assert sc[r].tolist() == [w[0] for w in want]
        assert ids[r].tolist() == [w[1] for w in want]
    # 0.0 above -0.0 whatever the ids
    z_ids, _ = merge_topk(
        np.array([[5]]),
        np.array([[-0.0]], np.float32),
        np.array([[9]]),
        np.zeros((1, 1), np.float32),
        1,
    )
    assert z_ids.tolist() == [[9]]


def test_plan_stays_under_the_limit_and_refuses_too_little() -> None:
    n_q, n_c, d, k = 200_000, 2_000_000, 384, 101
    for gb in (2, 4, 8, 16):
        p = plan_blocks(n_q, n_c, d, k, itemsize=2, memory_limit=gb << 30, int8=True)
        assert p.estimate_bytes <= gb << 30
        assert p.query_rows * p.blocks >= n_q and p.shard_rows * p.shards >= n_c
        assert p.shard_rows >= k
    small = plan_blocks(n_q, n_c, d, k, itemsize=2, memory_limit=2 << 30, int8=True)
    large = plan_blocks(n_q, n_c, d, k, itemsize=2, memory_limit=8 << 30, int8=True)
    assert small.shards > large.shards == 1
    with pytest.raises(InputError, match="memory limit 0.50 GiB is below what this run needs"):
        plan_blocks(n_q, n_c, d, k, memory_limit=512 << 20)
    assert parse_memory("8GB") == 8 * 10**9 and parse_memory("6GiB") == 6 << 30
    assert parse_memory("512m") == 512 << 20 and parse_memory(None) is None
    assert parse_memory("4096B") == 4096
    for bad in ("lots", "8", "8 apples"):
        with pytest.raises(InputError, match="expected a size with its unit"):
            parse_memory(bad)
    assert BlockPlan(10, 5, 3, 5, 0).block(3) == (9, 10)


def test_resume_skips_saved_blocks_and_refuses_other_inputs(
    cisi: dict[str, object], tmp_path: Path
) -> None:
    q, c, qids = cisi["queries"], cisi["corpus"], np.asarray(cisi["qids"])
    pos = cisi["positives"]
    assert isinstance(pos, list) and isinstance(q, np.ndarray) and isinstance(c, np.ndarray)
    kw = {"num_negatives": 4, "sampling": "random", "seed": 1, "block_queries": 10}
    work = tmp_path / "w"
    first = select_streamed(q, c, pos, query_rows=qids, work_dir=work, **kw)  # type: ignore[arg-type]
    blocks = sorted(work.glob("block-*.npz"))
    assert len(blocks) == -(-len(qids) // 10) >= 4 and (work / "plan.json").is_file()
    # a saved block is used as it is: a sentinel written into one comes back unchanged
    with np.load(blocks[1]) as z:
        saved = {n: z[n] for n in z.files}
    saved["scores"] = np.full_like(saved["scores"], 42.0)
    np.savez(blocks[1], **saved)
    blocks[2].unlink()  # a block never saved (killed before it) is computed again
    blocks[3].write_bytes(b"half a file")  # an unreadable one too
    again = select_streamed(q, c, pos, query_rows=qids, work_dir=work, **kw)  # type: ignore[arg-type]
    a, b = first.offsets[10], first.offsets[20]
    assert (again.scores[a:b] == 42.0).all()
    fixed = again.scores.copy()
    fixed[a:b] = first.scores[a:b]
    assert np.array_equal(fixed, first.scores) and np.array_equal(again.ids, first.ids)
    # other settings or other embeddings: refused, never mixed into the saved blocks
    with pytest.raises(InputError, match="checkpoints of another mining run"):
        select_streamed(q, c, pos, query_rows=qids, work_dir=work, **{**kw, "seed": 2})  # type: ignore[arg-type]
    c2 = c.copy()
    c2[0, 0] += 1e-3
    with pytest.raises(InputError, match="checkpoints of another mining run"):
        select_streamed(q, c2, pos, query_rows=qids, work_dir=work, **kw)  # type: ignore[arg-type]


_RUN = """
import sys, numpy as np
from trueneg.streamed import select_streamed
q = np.load(sys.argv[1], mmap_mode="r"); c = np.load(sys.argv[2], mmap_mode="r")
pos = [[int(i)] for i in np.load(sys.argv[3])]
sel = select_streamed(q, c, pos, work_dir=sys.argv[4], block_queries=200, num_negatives=7,
                      relative_margin=0.05, memory_limit="4GB")
np.savez(sys.argv[5], **{f: getattr(sel, f) for f in FIELDS})
""".replace("FIELDS", repr(FIELDS))


def test_kill_9_and_rerun_give_byte_identical_output(tmp_path: Path) -> None:
    """A run killed with SIGKILL part way (stopped first, so the kill lands between two known
    blocks) and rerun gives the same bytes as a run never killed."""
    rng = np.random.default_rng(5)
    c = rng.standard_normal((200_000, 128)).astype(np.float16)
    pos = rng.integers(0, len(c), 6000)
    q = (c[pos].astype(np.float32) + rng.standard_normal((6000, 128)).astype(np.float32)).astype(
        np.float16
    )
    for name, a in (("q", q), ("c", c), ("pos", pos)):
        np.save(tmp_path / f"{name}.npy", a)
    env = {**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1", "TRUENEG_NUM_THREADS": "1"}

    def run(work: str, out: str) -> subprocess.Popen[bytes]:
        args = [str(tmp_path / f) for f in ("q.npy", "c.npy", "pos.npy")]
        return subprocess.Popen(
            [sys.executable, "-c", _RUN, *args, str(tmp_path / work), str(tmp_path / out)],
            env=env,
        )

    assert run("w-ref", "ref.npz").wait(timeout=300) == 0
    p = run("w", "out.npz")
    deadline = time.time() + 120
    while not list((tmp_path / "w").glob("block-*.npz")) and p.poll() is None:
        assert time.time() < deadline
        time.sleep(0.002)
    p.send_signal(signal.SIGSTOP)
    saved = len(list((tmp_path / "w").glob("block-*.npz")))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert 1 <= saved < 30, saved  # killed part way
    assert not (tmp_path / "out.npz").exists()
    assert run("w", "out.npz").wait(timeout=300) == 0
    with np.load(tmp_path / "out.npz") as got, np.load(tmp_path / "ref.npz") as want:
        for f in FIELDS:  # the arrays' bytes (an .npz file also holds zip timestamps)
            assert got[f].dtype == want[f].dtype and got[f].tobytes() == want[f].tobytes(), f


def _mine_cli(coll: Path, tmp: Path, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "mine",
            str(coll),
            "--query-embeddings",
            str(tmp / "q.npy"),
            "--passage-embeddings",
            str(tmp / "p.npy"),
            "-o",
            str(tmp / out),
            "--num-negatives",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TRUENEG_DISABLE_PROGRESS_BARS": "1"},
        check=False,
    )


def test_cli_memory_limit_and_work_folder(data_dir: Path, tmp_path: Path) -> None:
    from trueneg import Collection, ingest
    from trueneg.texts import passage_texts

    coll = ingest([data_dir / "beir-cisi"], tmp_path / "c")
    np.save(tmp_path / "q.npy", _bag_of_words(coll.queries["text"].to_pylist()))
    np.save(tmp_path / "p.npy", _bag_of_words(passage_texts(coll.passages)).astype(np.float16))
    r = _mine_cli(coll.path, tmp_path, "a")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "a.work").exists()  # the default work folder, removed once done
    # a limit that cuts the corpus into shards and the queries into blocks: the same collection
    k = 100 + max(len(p) for p in coll.examples["positives"].to_pylist())
    tight = plan_blocks(len(coll.examples), len(coll.passages), 256, k, itemsize=2).estimate_bytes
    while (
        plan_blocks(
            len(coll.examples), len(coll.passages), 256, k, itemsize=2, memory_limit=tight
        ).shards
        < 3
    ):
        tight -= 32 << 10
    r = _mine_cli(
        coll.path, tmp_path, "b", "--memory-limit", f"{tight}B", "--work-dir", str(tmp_path / "wb")
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "wb").exists()
    a, b = Collection.load(tmp_path / "a"), Collection.load(tmp_path / "b")
    for col in ("negatives", "neg_scores", "pos_scores"):
        assert a.examples[col].to_pylist() == b.examples[col].to_pylist(), col
    # too little memory: one line naming the flag, nothing written
    r = _mine_cli(coll.path, tmp_path, "x", "--memory-limit", "100MB")
    assert r.returncode == 1 and "raise --memory-limit" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
    # a work folder that holds someone's files is refused and left as it was
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    r = _mine_cli(coll.path, tmp_path, "d", "--work-dir", str(mine))
    assert r.returncode == 1 and "not a trueneg work folder" in r.stderr
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    # a work folder inside the input collection is refused
    r = _mine_cli(coll.path, tmp_path, "e", "--work-dir", str(coll.path / "w"))
    assert r.returncode == 1 and "inside the input" in r.stderr
