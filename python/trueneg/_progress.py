"""Progress bars: tqdm, off everywhere with TRUENEG_DISABLE_PROGRESS_BARS=1."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress_disabled() -> bool:
    return os.environ.get("TRUENEG_DISABLE_PROGRESS_BARS", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kw: Any) -> tqdm:
    """A tqdm bar that appears only after two seconds and respects the off switch."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=progress_disabled(),
        delay=2.0,
        file=sys.stderr,
        dynamic_ncols=True,
        **kw,
    )
