"""The one way rayqueue tells a start-time range to people: ``~4m, by 11m`` (the QueueUnit's ETA column,
the create warning, and ``kubectl rayqueue why``, ``queue`` and ``whatif``)."""

from __future__ import annotations

from typing import Final

__all__ = ["eta_text", "span"]

NS: Final = 10**9


def span(seconds: float, *, up: bool = False) -> str:
    """A wait as people read it, to two units at most: ``45s``, ``4m``, ``1h30m``, ``2d3h``. Rounded to the
    nearest unit shown, or up with ``up`` (a bound is never told earlier than it is)."""
    seconds = max(0.0, seconds)
    for unit, small, name, small_name in ((86400, 3600, "d", "h"), (3600, 60, "h", "m")):
        if seconds >= unit:
            n = -(-seconds // small) if up else round(seconds / small)
            big, rest = divmod(int(n), unit // small)
            return f"{big}{name}{rest}{small_name}" if rest else f"{big}{name}"
    if seconds >= 90:
        return f"{int(-(-seconds // 60)) if up else round(seconds / 60)}m"
    return f"{int(-(-seconds // 1)) if up else round(seconds)}s"


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
