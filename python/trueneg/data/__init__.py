"""Data bundled with the package (see each folder's SOURCE.md)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).parent
RLHN_SAMPLE_DIR = DATA_DIR / "rlhn-test-50"


def rlhn_sample_stage1() -> list[Path]:
    """The two stage-1 files of the bundled RLHN sample (FiQA and MS MARCO, 25 queries each)."""
    return [
        RLHN_SAMPLE_DIR / "fiqa.stage_1.gpt-4o-mini.jsonl",
        RLHN_SAMPLE_DIR / "msmarco_passage.stage_1.gpt-4o-mini.jsonl",
    ]
