"""The judge's settings: a cascade of stages (:class:`Stage`) and the run's sending settings
(:class:`JudgeConfig`), with RLHN's two stages as the default. Every value is checked on
construction, whichever way it comes in (TOML via :meth:`JudgeConfig.from_toml`, CLI options,
library keyword arguments). Kept apart from the cascade so the Batch API, the importers and the
Ray engine read the settings without importing the cascade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trueneg.config import at_least, check_keys, from_table, load_toml, one_of, positive, within
from trueneg.exceptions import InputError
from trueneg.judge.client import SendSettings
from trueneg.judge.cost import price_for

__all__ = [
    "ARHN_RULES",
    "BACKENDS",
    "METHODS",
    "RLHN_STAGES",
    "RULES",
    "JudgeConfig",
    "Stage",
    "is_local_endpoint",
    "with_overrides",
]

BACKENDS = ("openai", "batch", "replay", "local", "qrels")
RULES = ("better", "both")
METHODS = ("rlhn", "arhn")
ARHN_RULES = ("R", "F", "R+F")


@dataclass(frozen=True)
class Stage:
    name: str
    model: str
    #: the prompt: a bundled name or a template file (method "arhn": its answer-snippet prompt,
    #: default "arhn-answers")
    prompt: str = ""
    #: openai (any OpenAI-compatible endpoint), batch (the Batch API), replay (cache only, send nothing)
    backend: str = "openai"
    #: "all" examples, or "previous": the calls the previous stage flagged by ``trigger_rule``
    trigger: str = "all"
    trigger_rule: str = "both"
    #: labels that count as false negatives from this stage: "better", or "both" (better + worse)
    flag_rule: str = "better"
    temperature: float = 0.1
    max_completion_tokens: int = 4096
    #: an answer cut off at ``max_completion_tokens`` is asked again with twice the budget, up to
    #: this cap; one still cut off there is reported (status "length") and asked again next run
    max_completion_tokens_cap: int = 16384
    #: output tokens an answer takes on average, for ``judge estimate``'s expected cost (RLHN's
    #: recorded GPT-4o-mini / GPT-4o answers average 961 / 1,092 o200k tokens)
    expected_completion_tokens: int = 1000
    max_per_call: int = 25
    #: pointwise prompts: scores at or above this are false negatives
    min_score: int = 2
    #: backend "local": a negative is uncertain (sent on) when its cosine to the query reaches
    #: p - |p| * local_margin, p the lowest positive's; ``model`` is an embedding model folder
    #: ("default": all-MiniLM-L6-v2), ``prompt`` is ignored
    local_margin: float = 0.05
    #: backend "local": "embedding" (cosine of a bi-encoder, ``model`` an embedding folder) or
    #: "cross-encoder" (``model`` a cross-encoder folder, e.g. from ``trueneg train reranker``;
    #: the margin then applies to its logits)
    local_scorer: str = "embedding"
    #: backend "local": flag the uncertain negatives as false negatives too (a local scorer as the
    #: last, zero-cost judge) instead of only passing their calls on
    local_flags: bool = False
    #: backend "qrels": human labels as the judge, from a qrels TSV (query-id, corpus-id, score)
    #: or a BEIR folder (its ``qrels/test.tsv``), matched by query id and docid: a pair is a false
    #: negative when its grade reaches ``relevance_threshold``, not relevant below it, and
    #: "unjudged" (no label, so an earlier stage's verdict stands) when the file has no line for it
    qrels: str | None = None
    relevance_threshold: int = 1
    #: "rlhn": one prompt per call, read as RLHN's verdict (or a pointwise score); "arhn": answer
    #: snippets, then a RankGPT-style listwise ranking (:mod:`trueneg.judge.arhn`)
    method: str = "rlhn"
    #: method "arhn": R relabels negatives ranked above the positive, F drops negatives ranked
    #: below it that have an answer snippet (ambiguous), R+F both (the paper's best)
    arhn_rule: str = "R+F"
    #: method "arhn": the ranking prompt ("arhn-rank": by how directly a passage answers;
    #: "rankgpt": RankZephyr's wording, for RankGPT-trained rankers; or a template file)
    rank_prompt: str = "arhn-rank"
    #: method "arhn": RankGPT's sliding windows (candidates per ranking call, and the step)
    window_size: int = 20
    window_step: int = 10
    #: method "arhn": the candidates are shuffled with this seed (and the example's row) before
    #: ranking, against position bias
    shuffle_seed: int = 0
    #: method "arhn": passages are cut to this many words in the ranking prompt (0: whole)
    max_passage_words: int = 300
    #: method "arhn": how the answer snippets' JSON schema is asked for: "json_schema" (OpenAI's
    #: ``response_format``; vLLM, llama.cpp's llama-server, SGLang), "json_object" (``{"type":
    #: "json_object", "schema": ...}``: llama-cpp-python's server), or "off" (the prompt alone)
    structured_output: str = "json_schema"

    def __post_init__(self) -> None:
        try:
            self._check()
        except InputError as e:
            raise InputError(f"stage {self.name}: {e.reason}") from None

    def _check(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("name must be a non-empty string")
        one_of("backend", self.backend, BACKENDS)
        one_of("trigger", self.trigger, ("all", "previous"))
        one_of("trigger_rule", self.trigger_rule, RULES)
        one_of("flag_rule", self.flag_rule, RULES)
        one_of("local_scorer", self.local_scorer, ("embedding", "cross-encoder"))
        one_of("method", self.method, METHODS)
        one_of("arhn_rule", self.arhn_rule, ARHN_RULES)
        one_of("structured_output", self.structured_output, ("json_schema", "json_object", "off"))
        if self.method == "arhn":
            if self.is_local:
                raise InputError("method 'arhn' needs an LLM backend (openai, batch or replay)")
            if not self.prompt:
                object.__setattr__(self, "prompt", "arhn-answers")
            within("window_size", self.window_size, 2, 1000)
            within("window_step", self.window_step, 1, self.window_size - 1)
            at_least("max_passage_words", self.max_passage_words, 0)
            if not isinstance(self.rank_prompt, str) or not self.rank_prompt.strip():
                raise InputError("rank_prompt must name a bundled prompt or a prompt file")
        if not self.is_local:
            if not isinstance(self.model, str) or not self.model.strip():
                raise InputError("model must name the LLM (e.g. 'gpt-4o-mini')")
            if not isinstance(self.prompt, str) or not self.prompt.strip():
                raise InputError("prompt must name a bundled prompt or a prompt file")
        within("temperature", self.temperature, 0.0, 2.0)
        at_least("max_completion_tokens", self.max_completion_tokens, 1)
        at_least("expected_completion_tokens", self.expected_completion_tokens, 0)
        at_least("max_completion_tokens_cap", self.max_completion_tokens_cap, 0)
        if 0 < self.max_completion_tokens_cap < self.max_completion_tokens:
            raise InputError(
                f"max_completion_tokens_cap ({self.max_completion_tokens_cap}) is below "
                f"max_completion_tokens ({self.max_completion_tokens})"
            )
        within("max_per_call", self.max_per_call, 1, 1000)
        within("min_score", self.min_score, 0, 3)
        at_least("local_margin", self.local_margin, 0.0)
        at_least("relevance_threshold", self.relevance_threshold, 1)
        if self.backend == "qrels" and not self.qrels:
            raise InputError("backend 'qrels' needs qrels = PATH")

    @property
    def is_local(self) -> bool:
        """Judged on this machine, at no cost: a local scorer or human labels (qrels)."""
        return self.backend in ("local", "qrels")

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_completion_tokens": self.max_completion_tokens,
        }


#: RLHN as its code runs it: stage-1 flags count "better" docs, stage 2 re-judges every call with any
#: doc in <better> or <worse> and its flags count both (the paper's Fig. 6 says better only: set
#: flag_rule = "better" on stage 2 for that reading).
RLHN_STAGES = (
    Stage("stage1", "gpt-4o-mini", "gpt-4o-mini", trigger="all", flag_rule="better"),
    Stage("stage2", "gpt-4o", "gpt-4o", trigger="previous", trigger_rule="both", flag_rule="both"),
)


@dataclass(frozen=True)
class JudgeConfig(SendSettings):
    """The judge: its cascade of stages, and how their requests are sent and paid for (the
    sending settings of :class:`~trueneg.judge.client.SendSettings`: endpoint, concurrency, rate
    limits, retries, budget)."""

    stages: tuple[Stage, ...] = RLHN_STAGES
    prices: dict[str, tuple[float, ...]] = field(default_factory=dict)
    chunk_calls: int = 20_000
    #: Batch API: seconds between polls, and requests per uploaded file (the API allows 50,000)
    batch_poll_seconds: float = 30.0
    batch_max_lines: int = 50_000

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("budget_usd", self.budget_usd, 0.0, optional=True)
        at_least("chunk_calls", self.chunk_calls, 1)
        positive("batch_poll_seconds", self.batch_poll_seconds)
        within("batch_max_lines", self.batch_max_lines, 1, 50_000)
        for model, p in self.prices.items():
            if (
                not isinstance(p, tuple | list)
                or not 2 <= len(p) <= 4
                or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 for x in p
                )
            ):
                raise InputError(
                    f"prices.{model} must be 2 to 4 non-negative numbers (dollars per 1M tokens: "
                    f"input, output[, cached input[, batch discount]]), got {list(p) if isinstance(p, tuple) else p!r}"
                )
        if not self.stages:
            raise InputError("a cascade needs at least one stage")
        if self.stages[0].trigger != "all":
            raise InputError("the first stage must have trigger = 'all'")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names) or "dedup" in names:
            raise InputError(f"stage names must be unique and not 'dedup': {names}")

    @classmethod
    def from_toml(cls, path: str | Path) -> JudgeConfig:
        """A judge TOML file: a ``[judge]`` table (or the top level) and ``[[judge.stages]]``."""
        data = load_toml(path)
        if "judge" in data:
            check_keys(data, ("judge",), "the judge file", str(path), noun="table")
        return cls.from_dict(data.get("judge", data), path=str(path))

    @classmethod
    def from_dict(
        cls, j: Mapping[str, Any], path: str | None = None, *, skip: Sequence[str] = ()
    ) -> JudgeConfig:
        """Settings as read from TOML (the ``[judge]`` table), checked key by key: names (the
        nearest valid one for a typo), types, ranges. ``skip``: keys the caller reads itself."""
        if "api_key" in j:
            raise InputError(
                "[judge]: put the API key in an environment variable, named by api_key_env",
                path=path,
            )
        fixed: dict[str, Any] = {}
        if "stages" in j:
            if not isinstance(j["stages"], list) or not j["stages"]:
                raise InputError(
                    "[judge]: stages must be a list of [[judge.stages]] tables", path=path
                )
            fixed["stages"] = tuple(
                from_table(Stage, s, f"[[judge.stages]] {i + 1}", path)
                for i, s in enumerate(j["stages"])
            )
        return from_table(cls, j, "[judge]", path, skip=skip, **fixed)

    def price_of(self, model: str) -> Any:
        """The model's price: ``prices`` when it names the model, else OpenAI's list price, except
        on a local endpoint (localhost, 127.0.0.1, ::1, *.local): a model served there costs
        nothing (and counts nothing against ``budget_usd``) unless ``prices`` says otherwise."""
        if model in self.prices:
            return price_for(model, self.prices)
        if is_local_endpoint(self.base_url):
            return None
        return price_for(model, self.prices)

    def as_dict(self) -> dict[str, Any]:
        """Plain, picklable settings that :meth:`from_dict` reads back (for workers)."""
        d = asdict(self)
        d["stages"] = [dict(s) for s in d["stages"]]
        return d


def is_local_endpoint(url: str | None) -> bool:
    """A server on this machine or the local network: no OpenAI list price applies."""
    if not url:
        return False
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.endswith(".local")


def with_overrides(config: JudgeConfig, **kw: Any) -> JudgeConfig:
    return replace(config, **{k: v for k, v in kw.items() if v is not None})
