"""The Ray Data engine on a local 2-CPU cluster: the same judgments, negatives and embeddings as
the single-machine run, and no answer paid twice when a judge worker dies mid-shard and Ray
retries its batch."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

# Ray Data warns about its own deprecated internals and about small test datasets
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

from trueneg import ingest  # noqa: E402
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1  # noqa: E402
from trueneg.judge import JudgeConfig, judge_collection  # noqa: E402
from trueneg.judge.render import PROMPTS_DIR  # noqa: E402
from trueneg.mine import Selection  # noqa: E402

from .fake_openai import FakeOpenAI, State, load_rlhn  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    # workers inherit the environment of ray.init: the first judge worker to finish sending dies
    os.environ["TRUENEG_RAY_CRASH_ONCE"] = str(marker)
    os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-secret")
    os.environ["TRUENEG_DISABLE_PROGRESS_BARS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield marker
    ray.shutdown()
    os.environ.pop("TRUENEG_RAY_CRASH_ONCE", None)


def _server() -> FakeOpenAI:
    st = State(latency=0.005)
    load_rlhn(st, RLHN_SAMPLE_DIR, PROMPTS_DIR)
    return FakeOpenAI(st)


def test_pipeline_on_ray_equals_local_and_pays_once(cluster: Path, tmp_path: Path) -> None:
    from trueneg.pipeline import PipelineConfig, Runner

    runs = {}
    for engine in ("local", "ray"):
        with _server() as srv:
            cfg = PipelineConfig(
                workdir=tmp_path / engine,
                inputs=[str(p) for p in rlhn_sample_stage1()],
                format="tevatron",
                judge={"base_url": srv.base_url, "concurrency": 4},
                report=False,
                engine=engine,
                ray={"workers": 2, "judge_batch": 16},
            )
            Runner(cfg, say=lambda _: None).run()
            runs[engine] = dict(srv.state.paid)
    assert cluster.exists(), "the crash was not injected: the retry path went untested"
    # 86 distinct requests, each paid exactly once, although a worker died after paying
    assert len(runs["ray"]) == 86 and set(runs["ray"].values()) == {1}
    assert runs["ray"] == runs["local"]
    a, b = tmp_path / "local", tmp_path / "ray"
    for rel in ["deduped/judgments.parquet"] + [
        f"fixed/{s}/examples.parquet" for s in ("remove", "remove-hn", "relabel")
    ]:
        assert pq.read_table(a / rel).equals(pq.read_table(b / rel)), rel
    assert (b / "ray" / "judge").is_dir()  # the shards the workers read


def test_judge_send_hook_equals_local(cluster: Path, tmp_path: Path) -> None:
    from trueneg.distributed import RayConfig, RayEngine

    with _server() as srv:
        cfg = JudgeConfig(base_url=srv.base_url, concurrency=4)
        ingest(rlhn_sample_stage1(), tmp_path / "a")
        ingest(rlhn_sample_stage1(), tmp_path / "b")
        s1 = judge_collection(tmp_path / "a", cfg)
        eng = RayEngine(RayConfig(workers=2, judge_batch=8), workdir=tmp_path)
        s2 = judge_collection(tmp_path / "b", cfg, engine=eng)
    assert s1.false_negatives == s2.false_negatives == 76
    assert [x.sent for x in s1.stages] == [x.sent for x in s2.stages]
    assert pq.read_table(tmp_path / "a" / "judgments.parquet").equals(
        pq.read_table(tmp_path / "b" / "judgments.parquet")
    )


#: every array of a Selection, out_of_bounds included
FIELDS = tuple(f.name for f in dataclasses.fields(Selection))


def test_mining_and_embedding_on_ray_equal_local(cluster: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from trueneg.distributed import RayConfig, RayEngine
    from trueneg.mine import select_negatives
    from trueneg.models import Encoder, EncoderConfig

    eng = RayEngine(RayConfig(workers=2, shard_rows=64), workdir=tmp_path)
    rng = np.random.default_rng(0)
    c = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((300, 32)).astype(np.float32)
    pos = [[int(x) for x in rng.choice(3000, 1 + i % 3, replace=False)] for i in range(300)]
    for sampling in ("top", "random"):  # random: each shard draws what one call draws
        kw = {"num_negatives": 5, "range_max": 40, "relative_margin": 0.05, "sampling": sampling}
        a, b = select_negatives(q, c, pos, **kw), eng.select(q, c, pos, **kw)
        for f in FIELDS:
            assert np.array_equal(getattr(a, f), getattr(b, f)), (sampling, f)
    texts = [f"passage number {i} about {w}" for i, w in enumerate(["cats", "tax", "rust"] * 70)]
    # fp32: bf16 results depend on how texts are batched (padding), which shards change
    enc = Encoder(EncoderConfig(max_length=32, dtype="fp32"))
    mine = enc.encode(texts)
    theirs = eng.embed(
        EncoderConfig(max_length=32, model=str(enc.path), dtype="fp32"), texts, "passage"
    )
    np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_batch_functions_equal_the_cascade(cluster: Path, tmp_path: Path) -> None:
    """build_requests renders and keys exactly as the cascade; parse_responses reads the
    recorded RLHN answers exactly as the cascade's parser."""
    from trueneg import Collection
    from trueneg.distributed import build_requests, parse_responses
    from trueneg.judge.cascade import (
        CollectionText,
        make_requests,
        plan_stage,
        render_calls,
    )
    from trueneg.judge.parse import parse_listwise

    coll = Collection.load(ingest(rlhn_sample_stage1(), tmp_path / "c").path)
    cfg = JudgeConfig()
    text = CollectionText(coll)
    stage = cfg.stages[0]
    plan = plan_stage(text, stage, False)
    want = make_requests(stage, render_calls(text, stage, plan), cfg)
    batch = {
        "query": np.array([text.query[e] for e in plan.example], dtype=object),
        "positives": np.array(
            [[text.passage[p] for p in text.positives[e]] for e in plan.example] + [None],
            dtype=object,
        )[:-1],
        "negatives": np.array(
            [
                [text.passage[p] for p in text.negatives[e][s:t]]
                for e, s, t in zip(plan.example, plan.start, plan.end, strict=True)
            ]
            + [None],
            dtype=object,
        )[:-1],
    }
    got = build_requests(batch, config=cfg.as_dict(), stage=stage.name)
    assert list(got["key"]) == [r.key for r in want]
    contents = [
        "<better>\n[1]\n</better>\n<worse>\n[2]\n</worse>",
        "nothing to see",
        "<better>\n[]\n</better>\n<worse>\n[]\n</worse>",
    ]
    out = parse_responses(
        {
            "content": np.array(contents, dtype=object),
            "finish_reason": np.array(["stop", "stop", "length"], dtype=object),
            "refusal": np.array([None, None, None], dtype=object),
            "n_docs": np.array([3, 3, 3]),
        },
        prompt="gpt-4o-mini",
        rule="both",
    )
    for c, f, st, fl in zip(
        contents, ["stop", "stop", "length"], out["status"], out["flagged"], strict=True
    ):
        v = parse_listwise(c, 3, finish_reason=f)
        assert (st, list(fl)) == (v.status, v.flagged("both"))
