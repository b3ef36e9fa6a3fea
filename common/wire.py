"""A generic reader of JSON-like wire trees: typed access that records every shape error with its field path.

Wrong shapes (a container that is not a map, a bad quantity, a string where an integer belongs) are collected
as ``path: what`` and raised together as one ShapeError by the converter that reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence

from common.jsonkind import kind_of as _kind
from common.quantity import QuantityError, parse_quantity

__all__ = ["FrozenMap", "ShapeError", "WireReader", "field_path"]

# Quantities repeat ("1", "4Gi", "500m") across containers, groups and requests, and parsing one goes through
# Fraction: remember the recent ones. Bounded, so a client sending many distinct quantities costs no memory;
# typed, so 1 and 1.0 stay apart; a QuantityError is raised again each time, never remembered.
_parse_quantity = functools.lru_cache(maxsize=1024, typed=True)(parse_quantity)


class ShapeError(ValueError):
    """A RayJob or Pod whose shape is wrong; ``errors`` lists every problem as ``path: what``."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("; ".join(self.errors))


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable str -> str mapping (labels, annotations), iterated in key order."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"



def field_path(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the root: a field path as errors print it."""
    return f"{path}.{key}" if path else key


class WireReader:
    """Typed access to a JSON-like tree that records every shape error instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def as_map(self, value: object, path: str) -> Mapping[str, object]:
        if type(value) is dict:  # the common case, without the ABC check below
            return value
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return value
        self.fail(path, f"expected a map, got {_kind(value)}")
        return {}

    def as_list(self, value: object, path: str) -> Sequence[object]:
        if value is None:
            return ()
        if isinstance(value, list | tuple):
            return value
        self.fail(path, f"expected a list, got {_kind(value)}")
        return ()

    def as_str(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        self.fail(path, f"expected a string, got {_kind(value)}")
        return None

    def as_int(self, value: object, path: str, default: int, *, minimum: int = 0) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_kind(value)} {value!r}")
            return default
        if value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")
            return default
        return value

    def as_bool(self, value: object, path: str) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        self.fail(path, f"expected a boolean, got {_kind(value)} {value!r}")
        return False

    def str_map(self, value: object, path: str) -> FrozenMap:
        out: dict[str, str] = {}
        for key, item in self.as_map(value, path).items():
            if isinstance(item, str):
                out[key] = item
            else:
                self.fail(f"{path}[{key}]", f"expected a string, got {_kind(item)}")
        return FrozenMap(out)

    def quantities(self, value: object, parent: str, key: str) -> dict[str, int]:
        """The `{resource: quantity}` map at `parent`.`key`, zeros kept (an explicit 0 request is not
        defaulted to the limit). The field paths are spelled only for an error."""
        if value is None:
            return {}
        out: dict[str, int] = {}
        for name, raw in self.as_map(value, field_path(parent, key)).items():
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                self.fail(field_path(field_path(parent, key), name), f"invalid quantity {raw!r}: expected a string or a number")
                continue
            try:
                amount = _parse_quantity(name, raw)
            except QuantityError as exc:
                self.fail(field_path(field_path(parent, key), name), str(exc))
                continue
            if amount < 0:
                self.fail(field_path(field_path(parent, key), name), f"invalid quantity {raw!r}: must not be negative")
                continue
            out[name] = amount
        return out
