"""Operator mistakes and bad input, from the outside: each case runs the real CLI entry point and
asserts the exact one-line message, exit status 1, and that every file that existed before still
exists with the same bytes (nothing an input, cache or work folder held is lost)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from trueneg import Collection, ingest
from trueneg.cli import main
from trueneg.data import rlhn_sample_stage1

DATA = Path(__file__).parent / "data"
BGE_TOY = DATA / "flagembedding-examples" / "toy_finetune_data.jsonl"


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (a file root counts as itself)."""
    out: dict[str, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def fails(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    """Run the CLI; assert exit 1 and exactly one error line (plus the debug hint); return it."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) == 2 and err[1] == "hint: set TRUENEG_DEBUG=1 for a traceback", err
    assert err[0].startswith("error: "), err
    return err[0][len("error: ") :]


def ok(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture
def coll(tmp_path: Path) -> Path:
    ingest(rlhn_sample_stage1(), tmp_path / "c")
    return tmp_path / "c"


# -- outputs never replace, hold or sit inside an input -----------------------------------------


def test_ingest_into_the_inputs_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = tmp_path / "X"
    x.mkdir()
    shutil.copy(BGE_TOY, x / "data.jsonl")
    (x / "notes.txt").write_text("mine")
    before = snapshot(x)
    msg = fails(capsys, "ingest", x / "data.jsonl", "-o", x, "--overwrite")
    assert (
        msg == f"the output {x} contains the input {x / 'data.jsonl'}; choose an output outside it"
    )
    assert snapshot(x) == before


def test_fix_into_the_parent_of_its_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nest = tmp_path / "nest"
    ingest(rlhn_sample_stage1(), nest / "a")
    before = snapshot(nest)
    msg = fails(capsys, "fix", nest / "a", "-o", nest, "--overwrite")
    assert msg == f"the output {nest} contains the input {nest / 'a'}; choose an output outside it"
    assert snapshot(nest) == before


def test_mine_into_its_own_collection_is_refused(
    coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(coll)
    msg = fails(capsys, "mine", coll, "-o", coll / "mined")
    assert msg == (
        f"the output {coll / 'mined'} lies inside the input {coll}; choose an output outside it"
    )
    assert snapshot(coll) == before and not (coll / "mined").exists()


def test_dedup_onto_its_input_is_refused(coll: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(coll)
    msg = fails(capsys, "dedup", coll, "--action", "drop", "-o", coll, "--overwrite")
    assert msg == f"the output {coll} is also an input; choose another output"
    assert snapshot(coll) == before


def test_overwrite_never_replaces_a_folder_trueneg_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    before = snapshot(home)
    msg = fails(capsys, "ingest", BGE_TOY, "-o", home, "--overwrite")
    assert msg == (
        f"{home} exists and was not written by trueneg: refusing to replace it "
        "(choose a new or empty folder)"
    )
    assert snapshot(home) == before


def test_an_existing_output_needs_overwrite(
    coll: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fixed"
    ok(capsys, "fix", coll, "-o", out)
    before = snapshot(out)
    msg = fails(capsys, "fix", coll, "-o", out)
    assert msg == f"{out} exists and is not empty (pass --overwrite to replace it)"
    assert snapshot(out) == before
    ok(capsys, "fix", coll, "-o", out, "--overwrite")  # trueneg's own folder: replaced


def test_export_onto_the_file_it_was_ingested_from_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "train.jsonl"
    shutil.copy(BGE_TOY, src)
    ingest([src], tmp_path / "c")
    before = snapshot(src)
    msg = fails(capsys, "export", tmp_path / "c", "-f", "bge", "-o", src, "--overwrite")
    assert msg == f"the output {src} is also an input; choose another output"
    assert snapshot(src) == before


def test_export_bge_to_parquet_is_refused(coll: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = coll.parent / "x.parquet"
    msg = fails(capsys, "export", coll, "-f", "bge", "-o", out)
    assert msg == (
        f"{out}: the bge format is written as JSON Lines, not Parquet: use a .jsonl name "
        "(Parquet: tevatron, st)"
    )
    assert not out.exists()


def test_export_never_replaces_an_existing_file_without_overwrite(
    coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = coll.parent / "x.jsonl"
    out.write_text("keep me\n")
    msg = fails(capsys, "export", coll, "-f", "bge", "-o", out)
    assert msg == f"{out} exists (pass --overwrite to replace it)"
    assert out.read_text() == "keep me\n"


def test_export_a_folder_format_into_a_users_folder_is_refused(
    coll: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "corpus.jsonl").write_text("{}\n")
    before = snapshot(d)
    msg = fails(capsys, "export", coll, "-f", "beir", "-o", d, "--overwrite")
    assert msg.endswith(
        "was not written by trueneg: refusing to replace it (choose a new or empty folder)"
    )
    assert snapshot(d) == before


def test_run_fresh_never_deletes_a_users_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = tmp_path / "work"
    w.mkdir()
    (w / "data.csv").write_text("a,b\n")
    before = snapshot(w)
    msg = fails(capsys, "run", "--workdir", w, "--fresh")
    assert msg.endswith(
        "was not written by trueneg: refusing to replace it (choose a new or empty folder)"
    )
    assert snapshot(w) == before


def test_train_refuses_a_users_folder_before_training(
    coll: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "models"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"\0" * 8)
    before = snapshot(d)
    msg = fails(capsys, "train", "retriever", coll, "-o", d, "--overwrite")
    assert msg.endswith(
        "was not written by trueneg: refusing to replace it (choose a new or empty folder)"
    )
    assert snapshot(d) == before and not (tmp_path / "models.checkpoints").exists()


def test_report_inside_its_collection_is_refused(
    coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(coll)
    msg = fails(capsys, "report", coll, "-o", coll / "report")
    assert msg == (
        f"the output {coll / 'report'} lies inside the input {coll}; choose an output outside it"
    )
    assert snapshot(coll) == before


# -- temporaries and permissions -----------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_writes_temporaries_are_removed_on_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "c"
    stale = tmp_path / f".c.{_dead_pid()}-abcd1234.tmp"
    stale.mkdir()
    (stale / "examples.parquet").write_bytes(b"\0" * 1000)
    stale_file = tmp_path / f".c.{_dead_pid()}-zz9_x8y7.tmp"
    stale_file.write_bytes(b"half")
    live = tmp_path / f".c.{os.getpid()}-qqqqqqqq.tmp"  # a write in progress (this process)
    live.mkdir()
    unrelated = tmp_path / ".c.notes.tmp"  # not trueneg's name pattern
    unrelated.write_text("keep")
    ingest([BGE_TOY], out)
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c", live.name, unrelated.name])


def test_a_real_kill_leaves_nothing_behind_after_the_next_run(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    rows = BGE_TOY.read_bytes()
    with big.open("wb") as f:
        for _ in range(400):
            f.write(rows)
    code = "import sys; from trueneg import ingest; ingest([sys.argv[1]], sys.argv[2])"
    p = subprocess.Popen([sys.executable, "-c", code, str(big), str(tmp_path / "c")])
    for _ in range(600):
        if any(x.name.endswith(".tmp") for x in tmp_path.iterdir()):
            break
        p.poll()
        if p.returncode is not None:
            break
        import time

        time.sleep(0.01)
    p.kill()
    p.wait()
    ingest([BGE_TOY], tmp_path / "c", overwrite=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.jsonl", "c"]


def test_outputs_follow_the_umask(coll: Path, tmp_path: Path) -> None:
    from trueneg.formats import export_collection

    old = os.umask(0o022)
    try:
        export_collection(Collection.load(coll), "bge", tmp_path / "x.jsonl")
        ingest([BGE_TOY], tmp_path / "c2")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "c2").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "c2" / "manifest.json").stat().st_mode) == 0o644


def test_compressed_inputs_are_read(tmp_path: Path) -> None:
    gz = tmp_path / "train.jsonl.gz"
    gz.write_bytes(gzip.compress(BGE_TOY.read_bytes()))
    a = ingest([gz], tmp_path / "a")
    b = ingest([BGE_TOY], tmp_path / "b")
    assert len(a) == len(b) and a.source_format == "bge"
    assert a.examples["negatives"].to_pylist() == b.examples["negatives"].to_pylist()
    assert (
        orjson.loads((tmp_path / "a" / "manifest.json").read_bytes())["counts"]
        == orjson.loads((tmp_path / "b" / "manifest.json").read_bytes())["counts"]
    )


def test_beir_interleaved_qrels_make_one_example_per_query(tmp_path: Path) -> None:
    src = tmp_path / "mini"
    (src / "qrels").mkdir(parents=True)
    corpus = (DATA / "beir-cranfield" / "corpus.jsonl").read_bytes().splitlines()[:6]
    (src / "corpus.jsonl").write_bytes(b"\n".join(corpus) + b"\n")
    (src / "queries.jsonl").write_text('{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n')
    # query 1's positives are split by a negative and by query 2's rows
    qrels = "query-id\tcorpus-id\tscore\n1\t1\t2\n1\t2\t0\n2\t4\t1\n1\t3\t1\n2\t6\t0\n1\t5\t3\n"
    (src / "qrels" / "test.tsv").write_text(qrels)
    c = ingest([src], tmp_path / "c")
    docid = c.passages["docid"].to_pylist()
    got = {
        c.queries["query_id"][q].as_py(): ([docid[p] for p in pos], [docid[p] for p in neg])
        for q, pos, neg in zip(
            c.examples["qid"].to_pylist(),
            c.examples["positives"].to_pylist(),
            c.examples["negatives"].to_pylist(),
            strict=True,
        )
    }
    assert got == {"1": (["1", "3", "5"], ["2"]), "2": (["4"], ["6"])}
    from trueneg.formats import export_collection

    export_collection(c, "beir", tmp_path / "out")
    assert (tmp_path / "out" / "qrels" / "test.tsv").read_text() == qrels


# -- judge answers: none lost, none read wrong -----------------------------------------------------


from trueneg import judgments  # noqa: E402
from trueneg.judge import Cache, JudgeConfig, judge_collection  # noqa: E402
from trueneg.judge.cascade import RLHN_STAGES  # noqa: E402
from trueneg.judge.importers import import_rlhn  # noqa: E402
from trueneg.judge.render import PROMPTS_DIR  # noqa: E402

from .fake_openai import FakeOpenAI, State, load_rlhn  # noqa: E402


def _replay() -> State:
    st = State()
    from trueneg.data import RLHN_SAMPLE_DIR

    load_rlhn(st, RLHN_SAMPLE_DIR, PROMPTS_DIR)
    return st


def _stage1_keys(coll: Path) -> list[str]:
    with FakeOpenAI(_replay()) as srv:
        judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=RLHN_STAGES[:1]))
    t = judgments.load(coll)
    return list(dict.fromkeys(t["request_key"].to_pylist()))


def test_a_cut_off_answer_is_kept_but_asked_again_next_run(coll: Path) -> None:
    keys = _stage1_keys(coll)
    # an old cache: one answer stored as if final although the token limit cut it off
    import sqlite3

    db = sqlite3.connect(coll / "judge-cache.sqlite")
    db.execute(
        "UPDATE responses SET finish_reason='length', content=substr(content, 1, 40) WHERE key=?",
        (keys[0],),
    )
    db.commit()
    db.close()
    off = judge_collection(coll, JudgeConfig(stages=RLHN_STAGES[:1]), offline=True)
    assert off.stages[0].statuses.get("length") == 1  # reported, never "no false negative"
    with FakeOpenAI(_replay()) as srv:
        s = judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=RLHN_STAGES[:1]))
        assert srv.state.requests == 1  # only the cut-off one
    assert s.stages[0].statuses.get("length") is None and s.stages[0].cache_hits == 49
    with Cache(coll / "judge-cache.sqlite") as c:
        assert c.superseded_count() == 1 and c.count() == 50


def test_a_cut_off_answer_is_asked_again_with_a_larger_budget_up_to_the_cap(
    coll: Path, tmp_path: Path
) -> None:
    import dataclasses

    ingest(rlhn_sample_stage1(), tmp_path / "ref")
    with FakeOpenAI(_replay()) as srv:
        ref = judge_collection(
            tmp_path / "ref", JudgeConfig(base_url=srv.base_url, stages=RLHN_STAGES[:1])
        )
    st = _replay()
    st.truncate_below = 4096
    stage = dataclasses.replace(
        RLHN_STAGES[0], max_completion_tokens=1024, max_completion_tokens_cap=4096
    )
    with FakeOpenAI(st) as srv:
        s = judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=(stage,)))
    assert sorted(set(st.max_tokens_seen)) == [1024, 2048, 4096]
    assert "length" not in s.stages[0].statuses
    assert s.false_negatives == ref.false_negatives > 0
    assert sum(st.paid_unusable.values()) == 2 * 50 and max(st.paid.values()) == 1


def test_an_answer_cut_off_at_the_cap_is_reported_not_read(coll: Path) -> None:
    import dataclasses

    st = _replay()
    st.truncate_below = 10**9
    stage = dataclasses.replace(
        RLHN_STAGES[0], max_completion_tokens=1024, max_completion_tokens_cap=2048
    )
    with FakeOpenAI(st) as srv:
        s = judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=(stage,)))
    assert s.stages[0].statuses == {"length": 50} and s.false_negatives == 0
    t = judgments.load(coll)
    assert t["label"].null_count == len(t)
    assert set(t["reason"].to_pylist()) == {"the answer hit the token limit"}


def test_an_imported_null_answer_never_blocks_the_real_request(coll: Path, tmp_path: Path) -> None:
    rows = [orjson.loads(x) for x in rlhn_sample_stage1()[0].read_bytes().splitlines()]
    rows[0]["response"] = None
    rows[1]["response"] = 17
    f = tmp_path / "answers.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    with Cache(coll / "judge-cache.sqlite") as c:
        st = import_rlhn(c, [f], RLHN_STAGES[0])
    assert (st.imported, st.no_answer) == (len(rows) - 2, 2)
    with FakeOpenAI(_replay()) as srv:
        s = judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=RLHN_STAGES[:1]))
        assert srv.state.requests == 2 + 25  # the two null ones + the other subset's file
    assert s.stages[0].statuses.get("parse_error") is None


def test_a_failed_stage_two_leaves_the_pair_failed_not_decided_by_stage_one(coll: Path) -> None:
    from trueneg.fix import false_negative_pairs

    st = _replay()
    with FakeOpenAI(st) as srv:
        judge_collection(coll, JudgeConfig(base_url=srv.base_url, stages=RLHN_STAGES[:1]))
    t1 = judgments.load(coll)
    s1_flags = set(
        zip(*[t1.filter(t1["flagged"])[c].to_pylist() for c in ("example", "pid")], strict=True)
    )
    st.status_for_all = 400  # stage 2's every request is refused by the API
    from trueneg.judge.client import JudgeError

    with FakeOpenAI(st) as srv, pytest.raises(JudgeError, match="all 36 requests to .* failed"):
        judge_collection(coll, JudgeConfig(base_url=srv.base_url, max_attempts=1))
    fin = judgments.final_flags(judgments.load(coll))
    asked = fin.filter(pc.equal(fin["stage"], "stage2"))
    assert asked["label"].null_count == len(asked) and not any(asked["flagged"].to_pylist())
    assert all(r and "HTTP 400" in r for r in asked["reason"].to_pylist())
    fn = false_negative_pairs(judgments.load(coll))
    got = set(zip(fn["example"].to_pylist(), fn["pid"].to_pylist(), strict=True))
    assert s1_flags and not (got & s1_flags)  # none of stage 1's flags stands alone


def test_a_run_where_every_request_failed_exits_1(
    coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st = _replay()
    st.status_for_all = 401
    before = snapshot(coll)
    with FakeOpenAI(st) as srv:
        msg = fails(capsys, "judge", "run", coll, "--base-url", srv.base_url)
        assert msg == (
            f"all 50 requests to {srv.base_url} failed (HTTP 401: Incorrect API key provided); "
            "nothing was paid"
        )
    assert all(p in snapshot(coll) for p in before)


def test_fix_after_import_before_a_judge_run_is_refused(
    coll: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "judge", "import", coll, *rlhn_sample_stage1())
    msg = fails(capsys, "fix", coll, "-o", tmp_path / "fixed")
    assert msg == (
        f"{coll} holds judge answers that its judgments do not reflect (no judge run has read "
        "them): run the judge on it first (--offline reads the cached answers at no cost)"
    )
    assert not (tmp_path / "fixed").exists()
    ok(capsys, "judge", "run", coll, "--offline")
    ok(capsys, "fix", coll, "-o", tmp_path / "fixed")


def test_a_key_in_the_base_url_is_never_written(
    coll: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    secret = "SECRETKEY12345"
    with FakeOpenAI(_replay()) as srv, caplog.at_level(logging.DEBUG):
        url = srv.base_url.replace("http://", f"http://user:{secret}@") + f"?api-key={secret}"
        judge_collection(coll, JudgeConfig(base_url=url, stages=RLHN_STAGES[:1]))
    assert caplog.records and not any(secret in r.getMessage() for r in caplog.records)
    for f in coll.iterdir():
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f.name
    m = orjson.loads((coll / "manifest.json").read_bytes())
    assert m["steps"][-1]["params"]["base_url"].count("***") == 2


# -- per-example fields follow the lists they describe ---------------------------------------------


def _rlhn_rows(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def test_fix_rewrites_rlhn_id_lists_and_drops_the_old_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "run", "--workdir", tmp_path / "w")
    out = tmp_path / "relabel.jsonl"
    ok(capsys, "export", tmp_path / "w" / "fixed" / "relabel", "-f", "tevatron", "-o", out)
    rows = _rlhn_rows(out)
    changed = 0
    for r in rows:
        assert r["negative_passage_ids"] == [p["docid"] for p in r["negative_passages"]]
        assert r["positive_passage_ids"] == [p["docid"] for p in r["positive_passages"]]
        if "response" not in r:
            changed += 1
    # the 28 examples with false negatives, less the one dropped for more than 7: verdict gone
    assert changed == 27 and len(rows) == 49
    m = orjson.loads((tmp_path / "w" / "fixed" / "relabel" / "manifest.json").read_bytes())
    assert m["steps"][-1]["params"]["example_fields"] == {
        "rewritten": {"negative_passage_ids": 27, "positive_passage_ids": 27},
        "dropped": {"finish_reason": 27, "response": 27},
    }


def test_mine_rewrites_every_rows_id_lists(coll: Path, tmp_path: Path) -> None:
    import numpy as np

    from trueneg.mine import mine_collection

    c = Collection.load(coll)
    rng = np.random.default_rng(0)
    qe = rng.standard_normal((len(c.queries), 16)).astype(np.float32)
    pe = rng.standard_normal((len(c.passages), 16)).astype(np.float32)
    r = mine_collection(coll, tmp_path / "m", qe, pe, num_negatives=3)
    from trueneg.formats import export_collection

    export_collection(Collection.load(tmp_path / "m"), "tevatron", tmp_path / "m.jsonl")
    rows = _rlhn_rows(tmp_path / "m.jsonl")
    assert all(
        r["negative_passage_ids"] == [p["docid"] for p in r["negative_passages"]] for r in rows
    )
    assert not any("response" in x for x in rows)
    assert r["example_fields"]["dropped"] == {"finish_reason": 50, "response": 50}


# -- a table of operator mistakes: exact one-line message, exit 1, nothing lost ---------------------

RLHN_FILES = ", ".join(f'"{p}"' for p in rlhn_sample_stage1())
ING = f'[ingest]\ninputs = [{RLHN_FILES}]\nformat = "tevatron"\n'


def _write(tmp: Path, name: str, data: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _npy_object(tmp: Path) -> None:
    import numpy as np

    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _truncated_parquet(tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [orjson.loads(x) for x in BGE_TOY.read_bytes().splitlines() if x.strip()]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "t.parquet")
    b = (tmp / "t.parquet").read_bytes()
    (tmp / "trunc.parquet").write_bytes(b[: len(b) // 2])
    (tmp / "t.parquet").unlink()


DEEP = "[" * 300 + "]" * 300

#: (id, files to create {name: content | callable}, argv, expected message); {t} = the tmp folder
CASES: list[tuple[str, dict, list[str], str]] = [
    # judge TOML
    (
        "judge-budget-not-a-number",
        {"j.toml": '[judge]\nbudget_usd = "ten"\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: budget_usd must be a number, got 'ten'",
    ),
    (
        "judge-typo-nearest-name",
        {"j.toml": "[judge]\nbudget = 10\n"},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: unknown setting 'budget' (did you mean 'budget_usd'?)",
    ),
    (
        "judge-stage-without-model",
        {"j.toml": '[judge]\n[[judge.stages]]\nname = "s1"\nprompt = "gpt-4o-mini"\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [[judge.stages]] 1: missing setting 'model'",
    ),
    (
        "judge-prices-not-numbers",
        {"j.toml": '[judge]\n[judge.prices]\n"gpt-4o" = "cheap"\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: prices.gpt-4o must be a list of numbers, got 'cheap'",
    ),
    (
        "judge-prices-too-short",
        {"j.toml": '[judge]\n[judge.prices]\n"gpt-4o" = [1.0]\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: prices.gpt-4o must be 2 to 4 non-negative numbers (dollars per 1M "
        "tokens: input, output[, cached input[, batch discount]]), got [1.0]",
    ),
    (
        "judge-concurrency-0-toml",
        {"j.toml": "[judge]\nconcurrency = 0\n"},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: concurrency must be at least 1, got 0",
    ),
    (
        "judge-concurrency-0-cli",
        {},
        ["judge", "run", "{t}/c", "--concurrency", "0"],
        "concurrency must be at least 1, got 0",
    ),
    (
        "judge-rpm-negative-toml",
        {"j.toml": "[judge]\nrpm = -10\n"},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: rpm must be at least 1, got -10",
    ),
    (
        "judge-rpm-negative-cli",
        {},
        ["judge", "run", "{t}/c", "--rpm", "-10"],
        "rpm must be at least 1, got -10",
    ),
    (
        "judge-bad-backend",
        {
            "j.toml": '[[judge.stages]]\nname = "s1"\nmodel = "m"\nprompt = "gpt-4o-mini"\n'
            'backend = "opnai"\n'
        },
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [[judge.stages]] 1: stage s1: backend must be one of openai, batch, replay, "
        "local, qrels, got 'opnai' (did you mean 'openai'?)",
    ),
    (
        "judge-toml-syntax",
        {"j.toml": "[judge\nconcurrency = 2\n"},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: invalid TOML: Expected ']' at the end of a table declaration (at line 1, "
        "column 7)",
    ),
    (
        "judge-toml-not-utf8",
        {"j.toml": b'[judge]\nbase_url = "caf\xe9"\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml:2: not valid UTF-8 (bad byte 0xe9)",
    ),
    (
        "judge-config-missing",
        {},
        ["judge", "run", "{t}/c", "--config", "{t}/nope.toml"],
        "{t}/nope.toml: config file not found",
    ),
    (
        "judge-api-key-in-toml",
        {"j.toml": '[judge]\napi_key = "sk-123"\n'},
        ["judge", "run", "{t}/c", "--config", "{t}/j.toml"],
        "{t}/j.toml: [judge]: put the API key in an environment variable, named by api_key_env",
    ),
    # pipeline TOML
    (
        "pipeline-dedup-threshold-word",
        {"p.toml": ING + '[dedup]\nthreshold = "high"\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [dedup]: threshold must be a number, got 'high'",
    ),
    (
        "pipeline-fix-negative-k",
        {"p.toml": ING + "[fix]\nmax_false_negatives = -1\n"},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [fix]: max_false_negatives must be at least 0, got -1",
    ),
    (
        "pipeline-offline-string",
        {"p.toml": ING + '[judge]\noffline = "false"\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [judge]: offline must be true or false, got 'false'",
    ),
    (
        "pipeline-unknown-table",
        {"p.toml": ING + "[judgee]\noffline = true\n"},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: the pipeline file: unknown table 'judgee' (did you mean 'judge'?)",
    ),
    (
        "pipeline-bad-engine",
        {"p.toml": ING + '[pipeline]\nengine = "spark"\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [pipeline]: engine must be one of local, ray, got 'spark'",
    ),
    (
        "pipeline-strategy-typo",
        {"p.toml": ING + '[fix]\nstrategies = ["relable"]\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [fix]: strategies must be one of remove, remove-hn, relabel, got 'relable' "
        "(did you mean 'relabel'?)",
    ),
    (
        "pipeline-import-unknown-stage",
        {"p.toml": ING + f'[[judge.import]]\nfiles = [{RLHN_FILES}]\nstage = "stage3"\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [[judge.import]] 1: stage 'stage3' is not a stage of the cascade "
        "(stage1, stage2)",
    ),
    (
        "pipeline-no-ingest",
        {"p.toml": '[fix]\nstrategies = ["relabel"]\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [ingest] is missing (it needs inputs = [...])",
    ),
    (
        "pipeline-mine-typo",
        {"p.toml": ING + "[mine]\nnum_negative = 5\n"},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [mine]: unknown setting 'num_negative' (did you mean 'num_negatives'?)",
    ),
    (
        "pipeline-mine-range",
        {"p.toml": ING + "[mine]\nrange_min = 50\nrange_max = 10\n"},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [mine]: range_min (50) must be below range_max (10)",
    ),
    (
        "pipeline-ray-workers-0",
        {"p.toml": ING + "[ray]\nworkers = 0\n"},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [ray]: workers must be at least 1, got 0",
    ),
    (
        "pipeline-dedup-enabled-string",
        {"p.toml": ING + '[dedup]\nenabled = "no"\n'},
        ["run", "{t}/p.toml"],
        "{t}/p.toml: [dedup]: enabled must be true or false, got 'no'",
    ),
    # files that are not what they claim
    (
        "ingest-truncated-parquet",
        {"": _truncated_parquet},
        ["ingest", "{t}/trunc.parquet", "-o", "{t}/o"],
        "{t}/trunc.parquet: not a readable Parquet file (Parquet magic bytes not found in footer)",
    ),
    (
        "ingest-too-deep",
        {"deep.jsonl": '{"query": "q", "pos": ["p"], "neg": [], "meta": ' + DEEP + "}\n"},
        ["ingest", "{t}/deep.jsonl", "-o", "{t}/o"],
        "{t}/deep.jsonl:1: JSON nested deeper than 254 levels (the most trueneg writes back)",
    ),
    (
        "ingest-corrupt-gzip",
        {"x.jsonl.gz": b"\x1f\x8b\x08\x00garbage"},
        ["ingest", "{t}/x.jsonl.gz", "-o", "{t}/o", "-f", "tevatron"],
        "{t}/x.jsonl.gz: unreadable after line 0 (truncated or corrupt compressed data: "
        "Compressed file ended before the end-of-stream marker was reached)",
    ),
    (
        "mine-object-npy",
        {"": _npy_object},
        [
            "mine",
            "{t}/c",
            "-o",
            "{t}/m",
            "--query-embeddings",
            "{t}/obj.npy",
            "--passage-embeddings",
            "{t}/obj.npy",
        ],
        "{t}/obj.npy: a pickled or object array: trueneg reads numeric .npy arrays only",
    ),
    (
        "mine-missing-npy",
        {},
        [
            "mine",
            "{t}/c",
            "-o",
            "{t}/m",
            "--query-embeddings",
            "{t}/q.npy",
            "--passage-embeddings",
            "{t}/p.npy",
        ],
        "{t}/q.npy: file not found",
    ),
    (
        "mine-query-embeddings-alone",
        {"q.npy": b""},
        ["mine", "{t}/c", "-o", "{t}/m", "--query-embeddings", "{t}/q.npy"],
        "--query-embeddings needs its partner: give both --query-embeddings and "
        "--passage-embeddings, or neither (to embed with --model)",
    ),
    (
        "agreement-latin1-tsv",
        {"lab.tsv": "judge\thuman\ncaf\xe9\t1\n".encode("latin-1")},
        ["eval", "agreement", "{t}/lab.tsv"],
        "{t}/lab.tsv:2: not valid UTF-8 (bad byte 0xe9; save it as UTF-8)",
    ),
    (
        "agreement-row-is-a-list",
        {"lab.jsonl": "[1, 2]\n"},
        ["eval", "agreement", "{t}/lab.jsonl"],
        "{t}/lab.jsonl:1: expected a JSON object with 'judge' and 'human', got a list",
    ),
    (
        "agreement-nan-label",
        {"lab.csv": "judge,human\nnan,1\n"},
        ["eval", "agreement", "{t}/lab.csv"],
        "{t}/lab.csv:2: field judge: not a label: 'nan'",
    ),
    (
        "batch-output-not-objects",
        {"bo.jsonl": "[1]\n"},
        ["judge", "import", "{t}/c", "--batch-output", "{t}/bo.jsonl"],
        "{t}/bo.jsonl:1: not a Batch API output line (not a JSON object)",
    ),
    (
        "batch-output-bad-body",
        {
            "bo.jsonl": '{"custom_id": "x", "response": {"status_code": 200, "body": {"choices": "bad"}}}\n'
        },
        ["judge", "import", "{t}/c", "--batch-output", "{t}/bo.jsonl"],
        "{t}/bo.jsonl:1: not a Batch API output line (AttributeError: 'str' object has no "
        "attribute 'get')",
    ),
    (
        "export-compressed-name",
        {},
        ["export", "{t}/c", "-f", "bge", "-o", "{t}/x.jsonl.gz"],
        "{t}/x.jsonl.gz: compressed output is not written; write x.jsonl and compress it",
    ),
    (
        "export-folder-format-to-file",
        {},
        ["export", "{t}/c", "-f", "beir", "-o", "{t}/x.jsonl"],
        "{t}/x.jsonl: the beir format is a folder, not a .jsonl file",
    ),
    (
        "judge-model-without-stage",
        {},
        ["judge", "run", "{t}/c", "--model", "qwen2.5-7b"],
        "--model takes STAGE=MODEL, got 'qwen2.5-7b' (stages: stage1, stage2)",
    ),
    (
        "judge-model-unknown-stage",
        {},
        ["judge", "run", "{t}/c", "--model", "stage3=qwen2.5-7b"],
        "--model stage3=qwen2.5-7b: no stage 'stage3' (stages: stage1, stage2)",
    ),
    (
        "fix-unknown-strategy",
        {},
        ["fix", "{t}/c", "-o", "{t}/f", "--strategy", "relable"],
        "strategy must be one of remove, remove-hn, relabel, got 'relable'",
    ),
]


@pytest.mark.parametrize(
    ("files", "argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_operator_mistakes(
    files: dict, argv: list[str], expected: str, coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = coll.parent
    for name, content in files.items():
        content(t) if callable(content) else _write(t, name, content)
    before = snapshot(t)
    msg = fails(capsys, *[a.format(t=t) for a in argv])
    assert msg == expected.format(t=t)
    after = snapshot(t)
    assert {k: after.get(k) for k in before} == before  # every file that was there, unchanged


@pytest.mark.parametrize(
    ("errno_", "text"), [(28, "No space left on device"), (30, "Read-only file system")]
)
def test_disk_full_or_read_only_is_one_line_and_keeps_the_old_file(
    errno_: int,
    text: str,
    coll: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import trueneg._io as tio

    out = coll.parent / "x.jsonl"
    out.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno_, text)

    monkeypatch.setattr(tio.os, "fsync", full)
    msg = fails(capsys, "export", coll, "-f", "bge", "-o", out, "--overwrite")
    assert msg == f"{text} (errno {errno_}); nothing was replaced"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in coll.parent.iterdir()) == ["c", "x.jsonl"]  # no temp left


def test_every_stage_sees_all_positives_of_a_query(tmp_path: Path) -> None:
    """One example per (query, positive), as sentence-transformers triplets are: row 1's negative
    is row 2's positive. Dedup flags it as a free false negative, and the judge's ground truth
    for either row holds both positives."""
    from trueneg.dedup import dedup_collection
    from trueneg.judge.cascade import CollectionText

    texts = [
        orjson.loads(x)["text"]
        for x in (DATA / "beir-cisi" / "corpus.jsonl").read_bytes().splitlines()[:3]
    ]
    rows = [
        {"anchor": "q", "positive": texts[0], "negative": texts[1]},
        {"anchor": "q", "positive": texts[1], "negative": texts[2]},
    ]
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    c = ingest([f], tmp_path / "c")
    assert len(c) == 2 and c.examples["qid"].to_pylist() == [0, 0]
    r = dedup_collection(c)
    assert r.free_false_negatives == 1
    t = CollectionText(c)
    p0, p1 = c.examples["positives"].to_pylist()
    assert t.positives == [p0 + p1, p0 + p1]


def test_a_local_model_per_stage_is_estimated_at_no_cost(
    coll: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = ok(
        capsys, "judge", "estimate", coll, "--model", "stage1=qwen2.5-7b-instruct",
        "--base-url", "http://localhost:8000/v1", "--json",
    )  # fmt: skip
    s = json.loads(out)
    assert [x["model"] for x in s["stages"]] == ["qwen2.5-7b-instruct", "gpt-4o"]
    assert all(x["expected_cost_usd"] == 0 and x["estimated_cost_usd"] == 0 for x in s["stages"])
    assert s["stages"][0]["prompt_tokens"] > 0
    help_text = subprocess.run(
        [sys.executable, "-m", "trueneg", "judge", "run", "--help"], capture_output=True, text=True
    ).stdout
    assert "[[judge.stages]]" in help_text  # TOML tables shown as written
