from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TRUENEG_DISABLE_PROGRESS_BARS", "1")
# trueneg's cache (OpenVINO graphs, the drop-in's judge cache) in a folder of this test session,
# not the user's ~/.cache
os.environ.setdefault("TRUENEG_CACHE_DIR", tempfile.mkdtemp(prefix="trueneg-test-cache-"))

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def rlhn_dir() -> Path:
    from trueneg.data import RLHN_SAMPLE_DIR

    return RLHN_SAMPLE_DIR
