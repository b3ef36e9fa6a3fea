"""Resources: an immutable resource-name -> integer mapping in canonical units, with exact arithmetic."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from common.quantity import QuantityError, format_quantity, parse_quantity

__all__ = ["Excess", "Resources"]


@dataclass(frozen=True, slots=True)
class Excess:
    """One resource over its limit: used + requested > limit."""

    resource: str
    used: int
    requested: int
    limit: int

    def __str__(self) -> str:
        f = format_quantity
        r = self.resource
        return f"{r} used {f(r, self.used)} + request {f(r, self.requested)} > max {f(r, self.limit)}"


class Resources(Mapping[str, int]):
    """name -> amount in canonical units (cpu in millicores); immutable.

    A declared zero is kept: as a limit, `nvidia.com/gpu: 0` refuses any GPU, while a resource the limit
    does not name is unbounded. Sums and differences drop zeros (they are amounts), and equality compares
    amounts, so `{gpu: 0} == {}`; compare `.items()` to tell two declarations apart.
    """

    __slots__ = ("_api", "_hash", "_items")

    def __init__(self, items: Mapping[str, int] | None = None) -> None:
        self._items: dict[str, int] = {k: int(v) for k, v in sorted((items or {}).items())}
        self._hash: int | None = None
        self._api: dict[str, str] | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, object] | None, path: str = "") -> Resources:
        """Parse a `{name: quantity}` map from the API. Raises QuantityError naming the path."""
        out: dict[str, int] = {}
        for name, raw in (spec or {}).items():
            try:
                out[name] = parse_quantity(name, raw)  # type: ignore[arg-type]
            except QuantityError as exc:
                raise QuantityError(f"{path}.{name}: {exc}" if path else f"{name}: {exc}") from None
        return cls(out)

    def __getitem__(self, name: str) -> int:
        return self._items[name]

    def get(self, name: str, default: int = 0) -> int:  # type: ignore[override]
        return self._items.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _amounts(self) -> dict[str, int]:
        return {k: v for k, v in self._items.items() if v}

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._amounts().items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._amounts() == {k: v for k, v in other.items() if v}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Resources({self})"

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {format_quantity(k, v)}" for k, v in self._items.items()) + "}"

    def __add__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._items)
        for k, v in other.items():
            out[k] = out.get(k, 0) + v
        return Resources({k: v for k, v in out.items() if v})

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._items)
        for k, v in other.items():
            out[k] = out.get(k, 0) - v
        return Resources({k: v for k, v in out.items() if v})

    def scaled(self, factor: int) -> Resources:
        return Resources({k: v * factor for k, v in self._items.items() if v * factor})

    def clamp_low(self) -> Resources:
        """Negative entries become 0 (saturating subtraction's second half)."""
        return Resources({k: v for k, v in self._items.items() if v > 0})

    def max(self, other: Mapping[str, int]) -> Resources:
        """Per resource, the larger of the two."""
        return Resources({k: max(self.get(k), other.get(k, 0)) for k in set(self._items) | set(other)})

    def min(self, other: Mapping[str, int]) -> Resources:
        """Per resource, the smaller of the two (missing counts 0)."""
        return Resources({k: min(self.get(k), other.get(k, 0)) for k in set(self._items) & set(other)})

    def le(self, other: Mapping[str, int]) -> bool:
        """Every resource of self is <= the same resource of other (missing in other counts 0)."""
        return all(v <= other.get(k, 0) for k, v in self._items.items())

    def exceeding(self, request: Mapping[str, int], limit: Mapping[str, int]) -> tuple[Excess, ...]:
        """Which resources of `limit` self + request would exceed, sorted by name.

        Only resources that `limit` names are limited: a resource it does not name is unbounded.
        A resource that is not requested never counts as exceeding, even when usage is already over.
        """
        out = []
        for name in sorted(limit):
            req = request.get(name, 0)
            if req > 0 and self.get(name) + req > limit[name]:
                out.append(Excess(name, self.get(name), req, limit[name]))
        return tuple(out)

    def fits(self, request: Mapping[str, int], limit: Mapping[str, int]) -> bool:
        return not self.exceeding(request, limit)

    def to_api(self) -> dict[str, str]:
        """The `{name: quantity}` form for the API (status fields), short and exact. A fresh dict each call
        (callers may keep or change it); the formatting is done once per value."""
        if self._api is None:
            self._api = {k: format_quantity(k, v) for k, v in self._items.items()}
        return dict(self._api)


EMPTY = Resources()
