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
    """The canonical quantity (common.quantity.format_quantity), exact even in a column: ``11923550Ki``."""
    return format_quantity(resource, value)
