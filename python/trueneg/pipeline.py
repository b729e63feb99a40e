"""``trueneg run``: ingest -> dedup -> judge -> fix -> export -> report, with resume.

Each stage records a fingerprint of its settings and of the stage before it in the work folder; a
stage whose fingerprint matches is not redone, an interrupted one starts again (the judge's answer
cache makes that free). With no config the built-in default runs: the bundled RLHN sample (FiQA +
MS MARCO, 50 queries) with its recorded GPT-4o-mini and GPT-4o answers imported, offline, at zero
cost, ending with the three fixed collections and the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trueneg._io import (
    atomic_file,
    check_output,
    mark_own_folder,
    remove_own_folder,
    written_by_trueneg,
)
from trueneg.config import check_keys, from_table, load_toml, one_of
from trueneg.engine import Engine
from trueneg.exceptions import InputError

logger = logging.getLogger(__name__)

STAGES = ("ingest", "dedup", "mine", "judge", "fix", "generate", "export", "report")


@dataclass
class PipelineConfig:
    workdir: Path
    inputs: list[str]
    format: str = "auto"
    corpus: str | None = None
    dedup: dict[str, Any] | None = field(default_factory=dict)  # None: skip
    mine: dict[str, Any] | None = None  # None: keep the input negatives
    judge: dict[str, Any] = field(default_factory=dict)
    judge_imports: list[dict[str, Any]] = field(default_factory=list)
    offline: bool = False
    fix: dict[str, Any] = field(
        default_factory=lambda: {"strategies": ["remove", "remove-hn", "relabel"]}
    )
    #: None: off; else GenerateConfig settings plus ``strategies`` (the fixed collections that get
    #: generated negatives; default remove-hn and relabel): exported in place of the fixed ones
    generate: dict[str, Any] | None = None
    export_format: str = "tevatron"
    report: bool = True
    #: local, or ray: embedding, mining and judge calls as Ray Data map_batches (same results)
    engine: str = "local"
    #: RayConfig settings: address, workers, shard_rows, judge_batch
    ray: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise InputError(f"engine must be local or ray, got {self.engine!r}")

    def input_paths(self) -> list[str]:
        """Every file the pipeline reads: inputs, corpus, judge imports, qrels of qrels stages."""
        paths = [*self.inputs, *([self.corpus] if self.corpus else [])]
        for imp in self.judge_imports:
            paths += [str(f) for f in imp.get("files", [])]
        for s in self.judge.get("stages", []):
            if isinstance(s, dict) and s.get("qrels"):
                paths.append(str(s["qrels"]))
        if self.generate and self.generate.get("judge"):
            paths.append(str(self.generate["judge"]))
        return paths

    @classmethod
    def default(cls, workdir: str | Path = "trueneg-run") -> PipelineConfig:
        from trueneg.data import RLHN_SAMPLE_DIR, rlhn_sample_stage1

        return cls(
            workdir=Path(workdir),
            inputs=[str(p) for p in rlhn_sample_stage1()],
            format="tevatron",
            judge_imports=[
                {"files": [str(p) for p in rlhn_sample_stage1()], "stage": "stage1"},
                {
                    "files": [str(p) for p in sorted(RLHN_SAMPLE_DIR.glob("*stage_2*.jsonl"))],
                    "stage": "stage2",
                },
            ],
            offline=True,
        )

    @classmethod
    def from_toml(cls, path: str | Path, workdir: str | Path | None = None) -> PipelineConfig:
        """Read a pipeline TOML file: every table and key checked (an unknown one is named with
        the nearest valid name), every value's type and range, before anything runs."""
        from trueneg.dedup import DedupConfig
        from trueneg.fix import FixConfig
        from trueneg.judge.config import JudgeConfig
        from trueneg.mine import MineConfig
        from trueneg.models import EncoderConfig

        p = Path(path)
        where = str(p)
        d = load_toml(p)
        check_keys(d, TABLES, "the pipeline file", where, noun="table")
        for name in d:
            if not isinstance(d[name], dict):
                raise InputError(f"[{name}] must be a table", path=where)
        base = p.parent

        def rel(x: str | os.PathLike[str]) -> str:
            return str((base / x) if not Path(x).is_absolute() else Path(x))

        pipe = from_table(PipelineSection, d.get("pipeline", {}), "[pipeline]", where)
        if "ingest" not in d:
            raise InputError("[ingest] is missing (it needs inputs = [...])", path=where)
        ing = from_table(IngestSection, d["ingest"], "[ingest]", where)
        # [dedup] and [mine]: their stage's settings plus enabled
        dedup_t = dict(d.get("dedup", {}))
        dedup_on = _enabled(dedup_t, "[dedup]", where, default=True)
        from_table(DedupConfig, dedup_t, "[dedup]", where)
        mine_t = dict(d.get("mine", {}))
        mine_on = _enabled(mine_t, "[mine]", where, default="mine" in d)
        enc_keys = {f.name for f in dataclasses.fields(EncoderConfig)}
        mine_keys = {f.name for f in dataclasses.fields(MineConfig)}
        check_keys(mine_t, enc_keys | mine_keys, "[mine]", where)
        from_table(
            EncoderConfig, {k: v for k, v in mine_t.items() if k in enc_keys}, "[mine]", where
        )
        from_table(MineConfig, {k: v for k, v in mine_t.items() if k in mine_keys}, "[mine]", where)
        judge = dict(d.get("judge", {}))
        imports = judge.pop("import", [])
        offline = judge.pop("offline", False)
        if not isinstance(offline, bool):
            raise InputError(f"[judge]: offline must be true or false, got {offline!r}", path=where)
        jcfg = JudgeConfig.from_dict(judge, path=where)
        if not isinstance(imports, list):
            raise InputError("[judge]: import must be [[judge.import]] tables", path=where)
        stage_names = [s.name for s in jcfg.stages]
        checked_imports = []
        for i, imp in enumerate(imports, 1):
            it = from_table(ImportSection, imp, f"[[judge.import]] {i}", where)
            if it.stage not in stage_names:
                raise InputError(
                    f"[[judge.import]] {i}: stage {it.stage!r} is not a stage of the cascade "
                    f"({', '.join(stage_names)})",
                    path=where,
                )
            checked_imports.append({"files": [rel(f) for f in it.files], "stage": it.stage})
        fix_t = dict(d.get("fix", {}))
        fix = from_table(FixConfig, fix_t, "[fix]", where)
        gen_t = dict(d.get("generate", {}))
        gen_on = _enabled(gen_t, "[generate]", where, default="generate" in d)
        gen_strategies = gen_t.pop("strategies", None)
        if gen_strategies is None:
            gen_strategies = [x for x in fix.strategies if x in ("remove-hn", "relabel")]
        if gen_on and (
            not isinstance(gen_strategies, list)
            or not gen_strategies
            or any(x not in fix.strategies for x in gen_strategies)
        ):
            raise InputError(
                f"[generate]: strategies must be a list of [fix] strategies "
                f"({', '.join(fix.strategies)}), got {gen_strategies!r}",
                path=where,
            )
        if gen_t.get("judge"):
            gen_t["judge"] = rel(gen_t["judge"])
        from trueneg.generate import GenerateConfig

        if gen_on:
            from_table(GenerateConfig, gen_t, "[generate]", where)
        export = from_table(ExportSection, d.get("export", {}), "[export]", where)
        report = from_table(ReportSection, d.get("report", {}), "[report]", where)
        from trueneg.distributed import RayConfig

        ray = d.get("ray", {})
        from_table(RayConfig, ray, "[ray]", where)
        return cls(
            workdir=Path(workdir or (pipe.workdir and rel(pipe.workdir)) or base / "trueneg-run"),
            inputs=[rel(x) for x in ing.inputs],
            format=ing.format,
            corpus=rel(ing.corpus) if ing.corpus else None,
            dedup=dedup_t if dedup_on else None,
            mine=mine_t if mine_on else None,
            judge=judge,
            judge_imports=checked_imports,
            offline=offline,
            fix={
                "strategies": list(fix.strategies),
                "max_false_negatives": fix.max_false_negatives,
                "exempt": fix.exempt,
            },
            generate={**gen_t, "strategies": gen_strategies} if gen_on else None,
            export_format=export.format,
            report=report.enabled,
            engine=pipe.engine,
            ray=dict(ray),
        )


#: the tables a pipeline file may have
TABLES = (
    "pipeline",
    "ingest",
    "dedup",
    "mine",
    "judge",
    "fix",
    "generate",
    "export",
    "report",
    "ray",
)


def _enabled(table: dict[str, Any], where: str, path: str, *, default: bool) -> bool:
    v = table.pop("enabled", default)
    if not isinstance(v, bool):
        raise InputError(f"{where}: enabled must be true or false, got {v!r}", path=path)
    return v


@dataclass(frozen=True)
class PipelineSection:
    workdir: str | None = None
    engine: str = "local"

    def __post_init__(self) -> None:
        one_of("engine", self.engine, ("local", "ray"))


@dataclass(frozen=True)
class IngestSection:
    inputs: list[str]
    format: str = "auto"
    corpus: str | None = None

    def __post_init__(self) -> None:
        from trueneg.formats import FORMATS

        if not self.inputs:
            raise InputError("inputs must list at least one file")
        if self.format != "auto":
            one_of("format", self.format, [n for c, a in FORMATS.items() for n in (c, *a)])


@dataclass(frozen=True)
class ImportSection:
    files: list[str]
    stage: str = "stage1"


@dataclass(frozen=True)
class ExportSection:
    format: str = "tevatron"

    def __post_init__(self) -> None:
        from trueneg.formats import FORMATS

        one_of("format", self.format, [n for c, a in FORMATS.items() for n in (c, *a)])


@dataclass(frozen=True)
class ReportSection:
    enabled: bool = True


@dataclass
class StageResult:
    name: str
    status: str  # done / skipped (already done) / off
    seconds: float
    detail: str = ""


def _fp(*parts: Any) -> str:
    return hashlib.sha256(
        orjson.dumps(parts, default=str, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:16]


def _file_fp(paths: list[str]) -> list[Any]:
    out = []
    for p in paths:
        q = Path(p)
        st = q.stat() if q.exists() else None
        out.append([p, st.st_size if st else None, int(st.st_mtime) if st else None])
    return out


class Runner:
    def __init__(self, cfg: PipelineConfig, say: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.say = say
        self.w = cfg.workdir
        self.state_dir = self.w / ".state"
        self.results: list[StageResult] = []
        self._engine: Engine | None = None

    def engine(self) -> Engine | None:
        """The Ray engine when ``engine = "ray"`` (started on first use), else None (local)."""
        if self.cfg.engine != "ray":
            return None
        if self._engine is None:
            from trueneg.distributed import RayConfig, RayEngine

            self._engine = RayEngine(RayConfig(**self.cfg.ray), workdir=self.w)
        return self._engine

    def _done(self, stage: str, fp: str) -> bool:
        f = self.state_dir / f"{stage}.json"
        return f.is_file() and orjson.loads(f.read_bytes()).get("fingerprint") == fp

    def _mark(self, stage: str, fp: str, info: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.state_dir / f"{stage}.json") as f:
            f.write(orjson.dumps({"fingerprint": fp, "finished": time.time(), **info}, default=str))

    def _stage(self, name: str, fp: str, fn: Callable[[], str]) -> None:
        if self._done(name, fp):
            self.results.append(StageResult(name, "skipped", 0.0, "already done"))
            self.say(f"{name:7s} already done, skipped")
            return
        t = time.perf_counter()
        detail = fn()
        dt = time.perf_counter() - t
        self._mark(name, fp, {"detail": detail})
        self.results.append(StageResult(name, "done", dt, detail))
        self.say(f"{name:7s} {detail} ({dt:.1f} s)")

    def run(self) -> list[StageResult]:
        from trueneg import ingest
        from trueneg.dedup import DedupConfig, dedup_collection
        from trueneg.fix import fix_collection
        from trueneg.formats import export_collection
        from trueneg.judge import Cache, judge_collection
        from trueneg.judge.config import JudgeConfig
        from trueneg.judge.importers import import_rlhn

        cfg, w = self.cfg, self.w
        check_output(w, cfg.input_paths())
        if w.exists() and any(w.iterdir()) and not written_by_trueneg(w):
            raise InputError(
                f"work folder {w} exists and was not made by trueneg: choose a new or empty folder"
            )
        mark_own_folder(w)
        ingested, deduped = w / "collection", w / "deduped"
        fp_ingest = _fp("ingest", _file_fp(cfg.inputs), cfg.format, cfg.corpus)

        def do_ingest() -> str:
            c = ingest(cfg.inputs, ingested, format=cfg.format, corpus=cfg.corpus, overwrite=True)
            return f"{len(c):,} examples, {len(c.passages):,} passages"

        self._stage("ingest", fp_ingest, do_ingest)

        judged = ingested
        fp_prev = fp_ingest
        if cfg.dedup is not None:
            dedup_settings = cfg.dedup
            fp_dedup = _fp("dedup", fp_prev, dedup_settings)

            def do_dedup() -> str:
                from trueneg import Collection

                r = dedup_collection(
                    Collection.load(ingested),
                    DedupConfig(**dedup_settings),
                    out=deduped,
                    overwrite=True,
                )
                return (
                    f"{r.queries['duplicate_texts']:,} duplicate queries, {r.passages['duplicate_texts']:,} "
                    f"duplicate passages, {r.free_false_negatives:,} free false negatives"
                )

            self._stage("dedup", fp_dedup, do_dedup)
            judged, fp_prev = deduped, fp_dedup
        else:
            self.results.append(StageResult("dedup", "off", 0.0))

        if cfg.mine is not None:
            mine_settings = cfg.mine
            mined = w / "mined"
            fp_mine = _fp("mine", fp_prev, cfg.mine)
            source = judged

            def do_mine() -> str:
                from trueneg import Collection
                from trueneg.mine import mine_collection
                from trueneg.models import Encoder, EncoderConfig

                m = {k: v for k, v in mine_settings.items() if k != "enabled"}
                enc_keys = set(EncoderConfig.__dataclass_fields__)
                enc = Encoder(EncoderConfig(**{k: v for k, v in m.items() if k in enc_keys}))
                eng = self.engine()
                qe, pe = enc.encode_collection(Collection.load(source), engine=eng)
                sel = {k: v for k, v in m.items() if k not in enc_keys and k != "keep_old"}
                # a block checkpoint folder per stage fingerprint: a killed stage resumes there
                from trueneg.streamed import claim_work_folder, remove_work_folder

                for old in w.glob("mine-work-*"):
                    if old.name != f"mine-work-{fp_mine[:16]}":
                        remove_work_folder(old)
                work = claim_work_folder(w / f"mine-work-{fp_mine[:16]}")
                r = mine_collection(
                    source,
                    mined,
                    qe,
                    pe,
                    keep_old=bool(m.get("keep_old", False)),
                    overwrite=True,
                    engine=eng,
                    work_dir=work / "blocks",
                    **sel,
                )
                remove_work_folder(work)
                # dedup's free false negatives name negatives: they still hold when the old ones are kept
                if m.get("keep_old", False) and (source / "judgments.parquet").exists():
                    shutil.copyfile(source / "judgments.parquet", mined / "judgments.parquet")
                return (
                    f"{r['negatives']:,} negatives, {r['band']:,} in the ambiguous band, "
                    f"{r['short_examples']:,} examples short"
                )

            self._stage("mine", fp_mine, do_mine)
            judged, fp_prev = mined, fp_mine
        else:
            self.results.append(StageResult("mine", "off", 0.0))

        jcfg = JudgeConfig.from_dict(self.cfg.judge)
        fp_judge = _fp("judge", fp_prev, jcfg.__dict__, cfg.judge_imports, cfg.offline)

        def do_judge() -> str:
            cache_path = w / "judge-cache.sqlite"  # survives re-ingests; shared by reruns
            by_name = {s.name: s for s in jcfg.stages}
            with Cache(cache_path) as c:
                for imp in cfg.judge_imports:
                    stage = by_name.get(imp.get("stage", "stage1"))
                    if stage is None:
                        raise InputError(
                            f"judge import names an unknown stage {imp.get('stage')!r}"
                        )
                    import_rlhn(c, imp["files"], stage)
            eng = None if cfg.offline else self.engine()
            s = judge_collection(
                judged,
                jcfg,
                cache_path=cache_path,
                offline=cfg.offline,
                engine=eng,
            )
            sent = sum(x.sent for x in s.stages)
            return (
                f"{s.false_negatives:,} false negatives in {s.examples_with_false_negatives:,} examples; "
                f"{sent:,} requests sent, ${s.cost_usd:.4f}"
            )

        self._stage("judge", fp_judge, do_judge)
        fp_prev = fp_judge

        strategies = list(cfg.fix.get("strategies", ["remove", "remove-hn", "relabel"]))
        k = cfg.fix.get("max_false_negatives", 7)
        exempt = cfg.fix.get("exempt", "arguana")
        fp_fix = _fp("fix", fp_prev, strategies, k, exempt)

        def do_fix() -> str:
            parts = []
            for s in strategies:
                r = fix_collection(
                    judged, w / "fixed" / s, s, max_false_negatives=k, exempt=exempt, overwrite=True
                )
                parts.append(f"{s} {r.examples_before}->{r.examples_after}")
            return ", ".join(parts)

        self._stage("fix", fp_fix, do_fix)
        fp_prev = fp_fix

        final = {s: w / "fixed" / s for s in strategies}
        if cfg.generate is not None:
            gen_settings = {k: v for k, v in cfg.generate.items() if k != "strategies"}
            gen_for = list(cfg.generate.get("strategies", ["remove-hn", "relabel"]))
            fp_gen = _fp("generate", fp_prev, gen_settings, gen_for, cfg.offline)

            def do_generate() -> str:
                from trueneg.generate import GenerateConfig, generate_collection

                gcfg = GenerateConfig(**gen_settings)
                parts = []
                for s in gen_for:
                    r = generate_collection(
                        w / "fixed" / s,
                        w / "generated" / s,
                        gcfg,
                        cache_path=w / "judge-cache.sqlite",
                        offline=cfg.offline,
                        overwrite=True,
                    )
                    parts.append(f"{s} +{r.used:,} generated")
                return ", ".join(parts)

            self._stage("generate", fp_gen, do_generate)
            fp_prev = fp_gen
            final.update({s: w / "generated" / s for s in gen_for})
        else:
            self.results.append(StageResult("generate", "off", 0.0))

        fp_export = _fp("export", fp_prev, cfg.export_format)

        def do_export() -> str:
            from trueneg import Collection

            ext = {"tevatron": ".jsonl", "bge": ".jsonl", "st": ".jsonl"}.get(cfg.export_format, "")
            outs = []
            for s in strategies:
                target = w / "export" / f"{s}{ext}"
                export_collection(
                    Collection.load(final[s]), cfg.export_format, target, overwrite=True
                )
                outs.append(target.name)
            return f"{cfg.export_format}: " + ", ".join(outs)

        self._stage("export", fp_export, do_export)

        if cfg.report:
            fp_report = _fp("report", fp_prev, "v2")

            def do_report() -> str:
                from trueneg import Collection
                from trueneg.report import ReportData, load_json, write_report

                fixes = [load_json(w / "fixed" / s / "fix.json") for s in strategies]
                d = ReportData(
                    title="trueneg report",
                    collection=Collection.load(judged),
                    judge_summary=load_json(judged / "judge-summary.json"),
                    dedup=load_json(judged / "dedup.json"),
                    fixes=[f for f in fixes if f],
                )
                p = write_report(d, w / "report")
                return str(p)

            self._stage("report", fp_report, do_report)
        return self.results


def clean(workdir: str | Path) -> None:
    """Delete a work folder, only if trueneg made it (a user's folder is refused, not deleted)."""
    remove_own_folder(workdir)
