"""The one way rayqueue tells a start-time range to people: ``~4m, by 11m`` (the QueueUnit's ETA column,
the create warning, and ``kubectl rayqueue why``, ``queue`` and ``whatif``)."""

from __future__ import annotations

import math
from typing import Final

__all__ = ["eta_text", "span"]

NS: Final = 10**9


def span(seconds: float, *, up: bool = False) -> str:
    """A wait as people read it, to two units at most: ``45s``, ``4m``, ``1h30m``, ``2d3h``. Rounded to the
    nearest unit shown, or up with ``up`` (a bound is never told earlier than it is)."""
    def whole(x: float) -> int:
        return math.ceil(x - 1e-9) if up else round(x)

    seconds = max(0.0, seconds)
    if whole(seconds) < 60:
        return f"{whole(seconds)}s"
    minutes = whole(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        h, m = divmod(minutes, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    d, h = divmod(whole(seconds / 3600), 24)
    return f"{d}d{h}h" if h else f"{d}d"


def eta_text(p50_ns: int | None, p90_ns: int | None, now_ns: int) -> str:
    """``~4m, by 11m`` (the P50, then the P90 bound); ``not before ~4m`` without a bound (too little history);
    ``now``; ``unknown`` without a time. Relative to ``now_ns``: written text ages."""
    if p50_ns is None:
        return "unknown"
    if p50_ns <= now_ns and (p90_ns is not None and p90_ns <= now_ns):
        return "now"
    p50 = "now" if p50_ns <= now_ns else "~" + span((p50_ns - now_ns) / NS)
    if p90_ns is None:
        return f"not before {p50}"
    return f"{p50}, by {span((max(p90_ns, p50_ns) - now_ns) / NS, up=True)}"
