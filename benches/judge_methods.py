"""RLHN, ARHN (R, F, R+F) and SyNeg side by side on the bundled RLHN sample (50 queries, FiQA +
MS MARCO): calls per example, input tokens (exact o200k_base), expected output tokens and the
cost at OpenAI list prices, from ``judge estimate``'s machinery (dry runs: nothing is sent).

RLHN's stage 2 is costed on the 36 examples its real stage 1 forwarded (the recorded answers,
imported); its output tokens are the recorded answers' average (961 / 1,092). ARHN and SyNeg
have no public prompts or answers: their output is the documented expectation per call
(``judge/arhn.py``: 30 tokens per snippet entry, 4 per ranked candidate; SyNeg: 160 per
generated passage), and what they change in the data needs a real LLM (none runs here).

    python benches/judge_methods.py            # prints the Markdown table (seconds)
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from trueneg import Collection, ingest, judgments
from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1
from trueneg.generate import GenerateConfig, generate_collection
from trueneg.judge import Cache, JudgeConfig, Stage, judge_collection
from trueneg.judge.cascade import RLHN_STAGES
from trueneg.judge.cost import PRICES
from trueneg.judge.importers import import_rlhn

LIST = {m: PRICES[m] for m in ("gpt-4o-mini", "gpt-4o")}


def _dry(coll: Path, stages: tuple[Stage, ...]) -> list:
    return judge_collection(coll, JudgeConfig(stages=stages, prices=LIST), dry_run=True).stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-size", type=int, default=20)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        coll = ingest(rlhn_sample_stage1(), t / "c").path
        n = len(Collection.load(coll).examples)
        negs = sum(len(x) for x in Collection.load(coll).examples["negatives"].to_pylist())
        # RLHN: the real stage-1 answers decide which examples stage 2 sees
        with Cache(coll / "judge-cache.sqlite") as c:
            import_rlhn(c, rlhn_sample_stage1(), RLHN_STAGES[0])
            import_rlhn(c, sorted(RLHN_SAMPLE_DIR.glob("*stage_2*")), RLHN_STAGES[1])
        real = judge_collection(coll, JudgeConfig(prices=LIST), offline=True)
        tj = judgments.load(coll)
        s2 = tj.filter(pc.equal(tj["stage"], "stage2"))
        fwd = sorted(set(s2["example"].to_pylist()))
        sub = (
            Collection.load(coll)
            .derive(t / "fwd", Collection.load(coll).examples.take(pa.array(fwd)), step="subset")
            .path
        )
        st1 = _dry(coll, (replace(RLHN_STAGES[0], expected_completion_tokens=961),))[0]
        st2 = _dry(sub, (replace(RLHN_STAGES[1], trigger="all", expected_completion_tokens=1092),))[
            0
        ]
        rows.append(
            {
                "method": "RLHN (gpt-4o-mini, then gpt-4o on 36)",
                "calls": st1.calls + st2.calls,
                "input": st1.prompt_tokens + st2.prompt_tokens,
                "output": 961 * st1.calls + 1092 * st2.calls,
                "cost": st1.expected_cost_usd + st2.expected_cost_usd,
                "changes": f"{real.false_negatives} false negatives (recorded answers): relabel "
                "moves them to the positives, remove-hn drops them, remove drops their 28 queries",
            }
        )
        changes = {
            "R": "negatives ranked above the positive become positives",
            "F": "negatives ranked below the positive that hold an answer snippet are dropped",
            "R+F": "both (the paper: ~1.6 relabelled and ~2.2 dropped per 10 negatives)",
        }
        for rule in ("R", "F", "R+F"):
            st = _dry(
                coll,
                (
                    Stage(
                        "arhn",
                        "gpt-4o-mini",
                        method="arhn",
                        arhn_rule=rule,
                        window_size=args.window_size,
                    ),
                ),
            )[0]
            out_tok = round((st.expected_cost_usd - st.prompt_tokens * 0.15e-6) / 0.6e-6)
            rows.append(
                {
                    "method": f"ARHN {rule} (gpt-4o-mini prices)",
                    "calls": st.calls,
                    "input": st.prompt_tokens,
                    "output": out_tok,
                    "cost": st.expected_cost_usd,
                    "changes": changes[rule],
                }
            )
        g = generate_collection(
            coll,
            t / "g",
            GenerateConfig(prices={"gpt-4o-mini": LIST["gpt-4o-mini"]}),
            dry_run=True,
        )
        rows.append(
            {
                "method": "SyNeg (gpt-4o-mini, 4 per call)",
                "calls": g.calls,
                "input": g.prompt_tokens,
                "output": 160 * 4 * g.calls,
                "cost": g.expected_cost_usd,
                "changes": "adds generated hard negatives: 25% of each example's negatives, "
                "and refills examples left short",
            }
        )
    print(
        f"RLHN sample: {n} examples, {negs:,} negatives; list prices per 1M tokens: "
        f"gpt-4o-mini $0.15 / $0.60, gpt-4o $2.50 / $10.00\n"
    )
    print(
        "| method | calls / example | input tokens / example | output tokens / example "
        "| $ per 1k examples | what it changes |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['method']} | {r['calls'] / n:.2f} | {r['input'] / n:,.0f} | "
            f"{r['output'] / n:,.0f} | {1000 * r['cost'] / n:.2f} | {r['changes']} |"
        )


if __name__ == "__main__":
    main()
