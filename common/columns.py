"""Short column values for QueueUnit printer columns and the CLI: a request as ``cpu/memory``."""

from __future__ import annotations

from common.quantity import format_quantity
from common.resources import Resources

__all__ = ["compact_size"]


def compact_size(request: Resources | None) -> str:
    """A request as a short column value: ``cpu/memory`` (``8500m/17Gi``), other resources after them
    (``8500m/17Gi/nvidia.com/gpu=2``); ``-`` for nothing, ``unbounded`` for None."""
    if request is None:
        return "unbounded"
    if not request:
        return "-"
    parts = [_short(name, request.get(name)) for name in ("cpu", "memory")]
    parts += [f"{name}={_short(name, request.get(name))}" for name in sorted(request) if name not in ("cpu", "memory")]
    return "/".join(parts)


def _short(resource: str, value: int) -> str:
    """format_quantity, or for memory whose canonical form is long ("11923550Ki"), one decimal of the
    largest binary unit it reaches ("11.4Gi"): a column, not a value to compute with."""
    exact = format_quantity(resource, value)
    if resource != "memory" or len(exact.rstrip("KMGTPEik")) < 6 or value < 1024:
        return exact
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= unit:
            return f"{value / unit:.1f}{suffix}"
    return exact  # pragma: no cover - value >= 1024 reaches Ki
