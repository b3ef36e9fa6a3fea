"""How error messages name the JSON type of a value they did not expect ("a string", "a map", "null")."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["kind_of"]


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a map"
    return type(value).__name__
