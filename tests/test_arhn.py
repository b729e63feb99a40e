"""ARHN as a judge stage, on the real RLHN sample, through the real openai client and the test
server with a scripted model: every parse path, RankGPT's sliding windows against a transcription
of RankGPT's own loop, shuffling, the three rules, the fix step's use of the labels, cost
estimates, resume, and a cascade that mixes RLHN and ARHN."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from trueneg import Collection, ingest, judgments
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.exceptions import InputError
from trueneg.fix import ambiguous_pairs, false_negative_pairs, fix_collection
from trueneg.judge import JudgeConfig, Stage, judge_collection
from trueneg.judge.arhn import (
    ANSWER_SCHEMA,
    initial_order,
    load_template,
    parse_answers,
    parse_ranking,
    render_ranking,
    sliding_windows,
)
from trueneg.judge.cascade import RLHN_STAGES
from trueneg.judge.render import PROMPTS_DIR

from .fake_openai import FakeOpenAI, State, load_rlhn
from .scripted_llm import ScriptedLLM, answers_with_snippet, overlap, snippet


def _stats(srv: FakeOpenAI) -> dict:
    return json.loads(urllib.request.urlopen(srv.base_url.replace("/v1", "/stats")).read())


def arhn(rule: str = "R+F", **kw: object) -> Stage:
    return Stage("arhn", "qwen3-32b", method="arhn", arhn_rule=rule, **kw)  # type: ignore[arg-type]


@pytest.fixture
def coll_dir(tmp_path: Path) -> Path:
    ingest(rlhn_sample_stage1(), tmp_path / "c")
    return tmp_path / "c"


# -- reading answers ----------------------------------------------------------------------------

PASSAGES = ["The capital of France is Paris.", "Bananas are   yellow\nwhen ripe.", "Nothing here."]


def test_answer_snippets_parse_paths() -> None:
    ok = json.dumps(
        {
            "answers": [
                {"id": 1, "answer": "capital of France is Paris"},
                {"id": 2, "answer": "Bananas are yellow when ripe"},  # whitespace differs
                {"id": 3, "answer": "NO_ANSWER"},
            ]
        }
    )
    s = parse_answers(ok, PASSAGES)
    assert s.status == "ok" and s.statuses == ["ok"] * 3
    assert s.spans == ["capital of France is Paris", "Bananas are yellow when ripe", None]
    # a span not in the passage is its own status, not an answer
    bad = ok.replace("Paris", "Lyon")
    s = parse_answers(bad, PASSAGES)
    assert s.statuses[0] == "ungrounded" and s.spans[0] is None
    # fenced JSON after a <think> block, string ids, a repeated id (the first counts)
    fenced = (
        '<think>{"answers": "not this"}</think>\n```json\n{"answers": [{"id": "1", "answer": '
        '"Paris"}, {"id": 1, "answer": "NO_ANSWER"}, {"id": 2, "answer": "no_answer"}, '
        '{"id": 3, "answer": ""}]}\n```'
    )
    s = parse_answers(fenced, PASSAGES)
    assert s.status == "ok" and s.spans == ["Paris", None, None]
    # a passage without an entry, an id out of range
    part = json.dumps({"answers": [{"id": 1, "answer": "Paris"}, {"id": 9, "answer": "x"}]})
    s = parse_answers(part, PASSAGES)
    assert s.status == "incomplete" and s.statuses == ["ok", "missing_answer", "missing_answer"]
    assert any("out of range" in n for n in s.notes)
    assert parse_answers("Passage 1 answers it.", PASSAGES).status == "parse_error"
    assert parse_answers('{"answers": 3}', PASSAGES).status == "parse_error"
    assert parse_answers("I'm sorry, I cannot", PASSAGES).status == "refusal"
    assert parse_answers(None, PASSAGES, refusal="no").status == "refusal"
    assert parse_answers(ok[:20], PASSAGES, finish_reason="length").status == "length"
    assert parse_answers("", PASSAGES).status == "parse_error"
    assert not parse_answers("", PASSAGES).readable


def test_ranking_parse_paths_follow_rankgpt() -> None:
    assert parse_ranking("[3] > [1] > [2]", 3).order == [2, 0, 1]
    r = parse_ranking("<think>[1] is best? no</think>[2] > [2] > [3] > [1]", 3)
    assert r.status == "duplicate" and r.order == [1, 2, 0]
    r = parse_ranking("[4] > [2]", 5)  # missing ids appended in input order
    assert r.status == "incomplete" and r.order == [3, 1, 0, 2, 4]
    r = parse_ranking("[7] > [2] > [1]", 2)
    assert r.status == "out_of_range" and r.order == [1, 0]
    assert parse_ranking("no ranking here", 3).status == "parse_error"
    assert parse_ranking("[1] > [2]", 2, finish_reason="length").status == "length"
    assert not parse_ranking(None, 2, refusal="x").readable


def _rank_llm_windows(n: int, size: int, step: int) -> list[tuple[int, int]]:
    """The windows of rank_llm's ``sliding_windows`` (RankZephyr's, castorini/rank_llm),
    transcribed. RankGPT's original loop (``while start_pos >= rank_start``) skips the top of a
    list whose length is not a window plus a multiple of the step (26 candidates: the top 6 are
    never ranked); rank_llm's condition fixes that, and trueneg follows it."""
    out = []
    end_pos, start_pos = n, n - size
    while end_pos > 0 and start_pos + step != 0:
        start_pos = max(start_pos, 0)
        out.append((start_pos, end_pos))
        end_pos, start_pos = end_pos - step, start_pos - step
    return out


@pytest.mark.parametrize(
    ("n", "size", "step"),
    [(26, 20, 10), (20, 20, 10), (5, 20, 10), (101, 20, 10), (30, 4, 2), (7, 3, 1), (8, 3, 2)],
)
def test_sliding_windows_equal_rank_llm(n: int, size: int, step: int) -> None:
    ours = sliding_windows(n, size, step)
    assert ours == _rank_llm_windows(n, size, step)
    assert ours[-1][0] == 0 and ours[0][1] == n


def test_ranking_prompt_format() -> None:
    t = load_template("rankgpt")
    p = render_ranking(t, "who won", ["a [2] b\n c", " ".join(["w"] * 400)], 300)
    assert "[1] a (2) b c\n[2] " + " ".join(["w"] * 300) + "\n" in p
    assert p.startswith("I will provide you with 2 passages") and "Search Query: who won." in p
    assert t.messages(p)[0]["role"] == "system" and "RankLLM" in (t.system or "")
    # a template file works too, with its system file beside it
    assert load_template(str(PROMPTS_DIR / "arhn-rank.txt")).system == t.system
    with pytest.raises(InputError, match="unknown ARHN prompt"):
        load_template("no-such-prompt")


# -- the stage end to end -----------------------------------------------------------------------


def _reference(coll: Collection, stage: Stage) -> dict[tuple[int, int], tuple[int, str]]:
    """Each (example, negative)'s final rank and label, computed here from the scripted model's
    scorer and RankGPT's algorithm (receive_permutation + sliding windows, transcribed)."""
    ex = coll.examples
    q = coll.queries["text"].to_pylist()
    text = coll.passages["text"].to_pylist()
    out = {}
    for row, (qid, pos, neg) in enumerate(
        zip(
            ex["qid"].to_pylist(),
            ex["positives"].to_pylist(),
            ex["negatives"].to_pylist(),
            strict=True,
        )
    ):
        query = q[qid]
        negs = [p for p in dict.fromkeys(neg) if p not in set(pos)]
        cand = list(dict.fromkeys(pos)) + negs
        hits = [cand[i] for i in initial_order(len(cand), stage.shuffle_seed, row)]

        def shown(p: int) -> str:
            return " ".join(text[p].split()[: stage.max_passage_words])

        for s, e in sliding_windows(len(hits), stage.window_size, stage.window_step):
            cut = copy.deepcopy(hits[s:e])
            scores = [overlap(query, shown(p)) for p in cut]
            response = sorted(range(len(cut)), key=lambda i: -scores[i])
            for j, x in enumerate(response):
                hits[j + s] = cut[x]
        rank = {p: i + 1 for i, p in enumerate(hits)}
        top = min(rank[p] for p in pos)
        for p in negs:
            if rank[p] < top:
                label = "relabel" if "R" in stage.arhn_rule else "above_positive"
            elif "F" in stage.arhn_rule and answers_with_snippet(query, text[p]):
                label = "ambiguous"
            else:
                label = "not_relevant"
            out[(row, p)] = (rank[p], label)
    return out


def _rows(coll_dir: Path, stage: str = "arhn") -> list[dict]:
    t = judgments.load(coll_dir)
    return t.filter(pc.equal(t["stage"], stage)).to_pylist()


@pytest.mark.parametrize("rule", ["R+F", "R", "F"])
def test_arhn_stage_labels_follow_the_rule(coll_dir: Path, rule: str) -> None:
    llm = ScriptedLLM()
    state = State()
    state.responder = llm
    stage = arhn(rule, window_size=8, window_step=4)  # several windows per example
    with FakeOpenAI(state) as srv:
        s = judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(stage,)))
        first = _stats(srv)["requests"]
        again = judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(stage,)))
        assert _stats(srv)["requests"] == first  # the rerun is answered from the cache
    assert again.false_negatives == s.false_negatives and again.stages[0].sent == 0
    coll = Collection.load(coll_dir)
    want = _reference(coll, stage)
    rows = _rows(coll_dir)
    got = {(r["example"], r["pid"]): (int(r["similarity"]), r["label"]) for r in rows}
    assert got == want
    labels = [lab for _, lab in got.values()]
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["flagged"] == (r["label"] == "relabel") for r in rows)
    assert s.false_negatives == labels.count("relabel")
    if rule == "R":
        assert llm.answer_calls == 0 and "ambiguous" not in labels
        assert not state.response_formats
    else:
        n_neg = sum(len(n) for n in coll.examples["negatives"].to_pylist())
        assert llm.answer_calls == sum(
            -(-len(n) // 25) for n in coll.examples["negatives"].to_pylist()
        )
        assert n_neg == len(rows) and labels.count("ambiguous") > 0
        assert state.response_formats and all(f == ANSWER_SCHEMA for f in state.response_formats)
    if rule == "F":
        assert s.false_negatives == 0 and labels.count("above_positive") > 0
    else:
        assert labels.count("relabel") > 0
    windows = sum(
        len(sliding_windows(len(set(p) | set(n)), 8, 4))
        for p, n in zip(
            coll.examples["positives"].to_pylist(),
            coll.examples["negatives"].to_pylist(),
            strict=True,
        )
    )
    assert llm.rank_calls == windows
    # the reason records the rank, where the negative was shown, and the snippet
    amb = [r for r in rows if r["label"] == "ambiguous"]
    for r in amb[:5]:
        assert re.search(
            r"rank \d+ of \d+, best positive \d+; shown \d+ of \d+; answer: ", r["reason"]
        )
        span = snippet(coll.passages["text"][r["pid"]].as_py())
        assert r["reason"].endswith("answer: " + json.dumps(span, ensure_ascii=False))


def test_batch_api_backend_gives_the_same_labels(coll_dir: Path, tmp_path: Path) -> None:
    """ARHN over the Batch API: one batch per round of windows, the same labels as online."""
    state = State()
    state.responder = ScriptedLLM()
    other = tmp_path / "other"
    ingest(rlhn_sample_stage1(), other)
    with FakeOpenAI(state) as srv:
        judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(arhn(),)))
        batch = arhn(backend="batch")
        judge_collection(
            other,
            JudgeConfig(base_url=srv.base_url, stages=(batch,), batch_poll_seconds=0.01),
        )
        assert state.batches and _stats(srv)["requests"] > 0
    a = {(r["example"], r["pid"]): r["label"] for r in _rows(coll_dir)}
    b = {(r["example"], r["pid"]): r["label"] for r in _rows(other)}
    assert a == b and "relabel" in a.values()


def test_shuffle_seed_changes_what_is_shown(coll_dir: Path) -> None:
    state = State()
    state.responder = ScriptedLLM()
    with FakeOpenAI(state) as srv:
        judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(arhn("R"),)))
        n = _stats(srv)["requests"]
        judge_collection(
            coll_dir, JudgeConfig(base_url=srv.base_url, stages=(arhn("R", shuffle_seed=1),))
        )
        # every ranking call shows a new order: nothing is answered from the cache
        assert _stats(srv)["requests"] == 2 * n
    shown = [re.search(r"shown (\d+)", r["reason"]).group(1) for r in _rows(coll_dir)]  # type: ignore[union-attr]
    assert len(set(shown)) > 10
    assert initial_order(10, 0, 3) == initial_order(10, 0, 3) != initial_order(10, 1, 3)


def test_faults_leave_pairs_unlabelled_with_their_status(coll_dir: Path) -> None:
    coll = Collection.load(coll_dir)
    q = coll.queries["text"].to_pylist()
    qids = coll.examples["qid"].to_pylist()
    kinds = [
        "ungrounded",
        "missing",
        "fenced",
        "garbage",
        "refuse",
        "duplicate",
        "partial",
        "out_of_range",
        "no_ids",
    ]
    faults = {q[qids[i]]: k for i, k in enumerate(kinds)}
    state = State()
    state.responder = ScriptedLLM(faults)
    with FakeOpenAI(state) as srv:
        s = judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(arhn(),)))
    rows = _rows(coll_dir)
    by_ex: dict[int, list[dict]] = {}
    for r in rows:
        by_ex.setdefault(r["example"], []).append(r)
    status = {k: {r["status"] for r in by_ex[i]} for i, k in enumerate(kinds)}
    labelled = {k: all(r["label"] is not None for r in by_ex[i]) for i, k in enumerate(kinds)}
    assert "ungrounded" in status["ungrounded"] and labelled["ungrounded"]
    assert not any(r["label"] == "ambiguous" for r in by_ex[0])  # an ungrounded span is no answer
    assert "missing_answer" in status["missing"] and labelled["missing"]
    assert status["fenced"] == {"ok"} and labelled["fenced"]
    for k in ("garbage", "no_ids"):
        assert status[k] == {"parse_error"} and not labelled[k]
        assert all(r["label"] is None and not r["flagged"] for r in by_ex[kinds.index(k)])
    assert status["refuse"] == {"refusal"} and not labelled["refuse"]
    for k in ("duplicate", "partial", "out_of_range"):  # RankGPT reads these; so does trueneg
        assert labelled[k]
    st = s.stages[0].statuses
    assert st["parse_error"] == 2 and st["refusal"] == 1 and st["incomplete"] >= 2
    assert st["duplicate"] >= 1 and st["out_of_range"] >= 1


def test_fix_relabels_and_drops_ambiguous(coll_dir: Path, tmp_path: Path) -> None:
    state = State()
    state.responder = ScriptedLLM()
    with FakeOpenAI(state) as srv:
        judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(arhn(),)))
    t = judgments.load(coll_dir)
    fn, amb = false_negative_pairs(t), ambiguous_pairs(t)
    assert len(fn) and len(amb)
    fn_set = set(zip(fn["example"].to_pylist(), fn["pid"].to_pylist(), strict=True))
    amb_set = set(zip(amb["example"].to_pylist(), amb["pid"].to_pylist(), strict=True))
    assert not fn_set & amb_set
    old = Collection.load(coll_dir).examples
    for strategy in ("relabel", "remove-hn", "remove"):
        out = tmp_path / strategy
        rep = fix_collection(coll_dir, out, strategy, max_false_negatives=None)
        new = Collection.load(out).examples
        kept_rows = [
            i for i in range(len(old)) if strategy != "remove" or not any(e == i for e, _ in fn_set)
        ]
        assert len(new) == len(kept_rows)
        assert rep.dropped_ambiguous == sum(1 for e, _ in amb_set if e in kept_rows)
        for j, i in enumerate(kept_rows):
            pos, neg = old["positives"][i].as_py(), old["negatives"][i].as_py()
            fns = [p for p in neg if (i, p) in fn_set]
            want_neg = [p for p in neg if (i, p) not in amb_set and (i, p) not in fn_set]
            if strategy == "remove":
                want_neg = [p for p in neg if (i, p) not in amb_set]
            assert new["negatives"][j].as_py() == want_neg
            want_pos = pos + fns if strategy == "relabel" else pos
            assert new["positives"][j].as_py() == want_pos


def test_dry_run_costs_every_call_and_sends_nothing(coll_dir: Path) -> None:
    state = State()
    llm = ScriptedLLM()
    state.responder = llm
    prices = {"qwen3-32b": (0.1, 0.3)}
    stage = arhn(window_size=10, window_step=5)
    with FakeOpenAI(state) as srv:
        est = judge_collection(
            coll_dir,
            JudgeConfig(base_url=srv.base_url, stages=(stage,), prices=prices),
            dry_run=True,
        )
        assert _stats(srv)["requests"] == 0
        real = judge_collection(
            coll_dir, JudgeConfig(base_url=srv.base_url, stages=(stage,), prices=prices)
        )
    e, r = est.stages[0], real.stages[0]
    assert e.calls == r.calls == llm.answer_calls + llm.rank_calls
    assert e.estimated_cost_usd > e.expected_cost_usd > 0 and e.prompt_tokens > 0
    assert r.cost_usd > 0


def test_cascade_mixes_rlhn_then_arhn(coll_dir: Path, tmp_path: Path) -> None:
    """RLHN's GPT-4o-mini (replayed) first; ARHN judges only the calls it flagged."""
    state = State()
    load_rlhn(state, RLHN_SAMPLE_DIR, PROMPTS_DIR)
    llm = ScriptedLLM()
    state.responder = llm
    then = arhn("R", trigger="previous")
    cfg = JudgeConfig(stages=(RLHN_STAGES[0], then))
    with FakeOpenAI(state) as srv:
        s = judge_collection(coll_dir, dataclasses.replace(cfg, base_url=srv.base_url))
    t = judgments.load(coll_dir)
    s1 = t.filter(pc.equal(t["stage"], "stage1"))
    # stage 1 passes on every call with a document in <better> or <worse> (trigger_rule "both")
    hit = pc.is_in(
        pc.fill_null(s1["label"], ""), pc.cast(np.asarray(["better", "worse"]), "string")
    )
    passed = set(s1.filter(hit)["example"].to_pylist())
    judged = {r["example"] for r in _rows(coll_dir)}
    assert judged == passed and 0 < len(passed) < 50
    assert s.stages[1].calls == llm.rank_calls
    # the fix reads the deepest stage: ARHN's verdict on what it saw, stage 1's elsewhere
    fin = judgments.final_flags(t)
    deep = fin.filter(pc.is_in(fin["example"], pc.cast(np.asarray(sorted(passed)), "int64")))
    assert set(deep["stage"].to_pylist()) == {"arhn"}
    # the report shows both methods' labels per subset and stage, and the fix's ambiguous drops
    import trueneg

    fix_collection(coll_dir, tmp_path / "relabel", "relabel")
    r = trueneg.report(coll_dir, out=tmp_path / "report", fixed=[tmp_path / "relabel"]).report
    md = (r.parent / "report.md").read_text()
    table = md.split("### Labels per subset and stage")[1].split("\n\n")[1]
    head = table.splitlines()[0]
    assert "better" in head and "relabel" in head and "not_relevant" in head
    want = sum(1 for x in _rows(coll_dir) if x["label"] == "relabel")
    col = [c.strip() for c in head.strip("|").split("|")].index("relabel")
    got = sum(
        int(line.strip("|").split("|")[col])
        for line in table.splitlines()[2:]
        if "| arhn |" in line
    )
    assert got == want > 0
    assert "ambiguous dropped" in md


def test_structured_output_forms(coll_dir: Path) -> None:
    state = State()
    state.responder = ScriptedLLM()
    with FakeOpenAI(state) as srv:
        for form in ("json_object", "off"):
            stage = arhn("F", structured_output=form, max_per_call=30)
            judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(stage,)))
    # llama-cpp-python's form carries the same schema; "off" sends none
    assert len(state.response_formats) == 50
    assert all(
        f == {"type": "json_object", "schema": ANSWER_SCHEMA["json_schema"]["schema"]}
        for f in state.response_formats
    )
    assert all(r["label"] is not None for r in _rows(coll_dir))


def test_config_checks(tmp_path: Path) -> None:
    f = tmp_path / "j.toml"
    f.write_text(
        '[[judge.stages]]\nname = "arhn"\nmodel = "qwen3-32b"\nmethod = "arhn"\n'
        'arhn_rule = "F"\nrank_prompt = "rankgpt"\nwindow_size = 10\nwindow_step = 5\n'
    )
    st = JudgeConfig.from_toml(f).stages[0]
    assert (st.prompt, st.rank_prompt, st.arhn_rule, st.window_size) == (
        "arhn-answers",
        "rankgpt",
        "F",
        10,
    )
    with pytest.raises(InputError, match="arhn_rule"):
        arhn("RF")
    with pytest.raises(InputError, match="window_step"):
        arhn(window_size=10, window_step=10)
    with pytest.raises(InputError, match="needs an LLM backend"):
        Stage("x", "m", method="arhn", backend="local")
    with pytest.raises(InputError, match="structured_output"):
        arhn(structured_output="yes")
    with pytest.raises(InputError, match="method"):
        Stage("x", "m", "gpt-4o", method="arhnn")


def test_budget_stop_leaves_pairs_unlabelled_and_a_rerun_completes(coll_dir: Path) -> None:
    state = State()
    state.responder = ScriptedLLM()
    prices = {"qwen3-32b": (0.15, 0.6)}
    stage = arhn()
    with FakeOpenAI(state) as srv:
        base = JudgeConfig(base_url=srv.base_url, stages=(stage,), prices=prices, concurrency=1)
        worst = judge_collection(coll_dir, base, dry_run=True).stages[0].estimated_cost_usd
        tight = dataclasses.replace(base, budget_usd=5 * worst / 130)
        s = judge_collection(coll_dir, tight)
        assert s.stages[0].statuses.get("budget", 0) > 0
        rows = _rows(coll_dir)
        stopped = [r for r in rows if r["status"] == "budget"]
        assert stopped and all(r["label"] is None and not r["flagged"] for r in stopped)
        full = judge_collection(coll_dir, base)
        stats = _stats(srv)
    assert "budget" not in full.stages[0].statuses
    assert all(r["label"] is not None for r in _rows(coll_dir))
    assert max(stats["paid"].values()) == 1  # nothing bought twice


def test_local_scorer_then_arhn_on_what_it_passes(coll_dir: Path) -> None:
    """The free embedding scorer first; ARHN sees only the calls with a near-positive negative,
    and judges the negatives of those calls."""
    pytest.importorskip("torch")
    state = State()
    llm = ScriptedLLM()
    state.responder = llm
    local = Stage("local", "default", backend="local", local_margin=0.3)
    then = arhn("R+F", trigger="previous")
    with FakeOpenAI(state) as srv:
        s = judge_collection(coll_dir, JudgeConfig(base_url=srv.base_url, stages=(local, then)))
        est = judge_collection(
            coll_dir, JudgeConfig(base_url=srv.base_url, stages=(local, then)), dry_run=True
        )
    t = judgments.load(coll_dir)
    loc = t.filter(pc.equal(t["stage"], "local"))
    passed = set(loc.filter(pc.equal(loc["label"], "uncertain"))["example"].to_pylist())
    judged = {r["example"] for r in _rows(coll_dir)}
    assert judged == passed and 0 < len(passed) < 50
    assert s.stages[1].calls == llm.answer_calls + llm.rank_calls
    # the estimate prices ARHN on every example (what the prefilter passes is not known before)
    assert est.stages[1].calls > s.stages[1].calls and est.stages[1].prompt_tokens > 0
