"""Prices, token counts and cost estimates.

Prices are USD per 1M tokens (input, cached input, output), standard tier; the Batch API and flex
tier cost half. Figures as published by OpenAI (2025-2026); override with ``[prices]`` in the judge
config when they change. Token counts use the o200k_base encoding (GPT-4o family and later),
bundled in the Rust core, so estimates work offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trueneg import _core

PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-5-mini": (0.25, 0.025, 2.00),
}
BATCH_DISCOUNT = 0.5
#: tokens a chat request adds around its messages (role markers, reply priming)
MESSAGE_OVERHEAD = 7


@dataclass(frozen=True)
class Price:
    input: float
    cached: float
    output: float

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        batch: bool = False,
    ) -> float:
        c = (
            (prompt_tokens - cached_tokens) * self.input
            + cached_tokens * self.cached
            + completion_tokens * self.output
        ) / 1e6
        return c * (BATCH_DISCOUNT if batch else 1.0)


def price_for(model: str, overrides: Mapping[str, Sequence[float]] | None = None) -> Price | None:
    """The price of a model (longest known prefix, so dated snapshots match), or None if unknown."""
    table = {**PRICES, **{k: tuple(v) for k, v in (overrides or {}).items()}}
    for name in sorted(table, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            p = table[name]
            return Price(float(p[0]), float(p[1] if len(p) > 2 else p[0]), float(p[-1]))
    return None


def count_tokens(texts: Sequence[str]) -> np.ndarray:
    """o200k_base token counts of many texts, in parallel in Rust."""
    from trueneg.collection import string_array, string_buffers

    if not texts:
        return np.zeros(0, np.uint32)
    return _core.count_tokens(string_buffers(string_array(list(texts))))
