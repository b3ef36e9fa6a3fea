"""Kubernetes quantities ("500m", "4G", "14Gi", "1e3") as exact integers in canonical units, and back."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["QuantityError", "format_quantity", "is_milli_resource", "parse_exact", "parse_quantity"]

# The grammar of k8s.io/apimachinery/pkg/api/resource.ParseQuantity:
#   <signedNumber><suffix>, suffix = binarySI | decimalSI | decimalExponent.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# The whole-unit suffixes format_quantity may use, as integers, binary first (computed once).
_UNITS: tuple[tuple[str, int], ...] = (*_BINARY.items(), *((k, int(v)) for k, v in _DECIMAL.items() if v >= 1))
_MAX_EXPONENT = 60  # beyond any real quantity; keeps "1e999999" from allocating a huge integer
MAX_LENGTH = 64


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def is_milli_resource(resource: str) -> bool:
    """cpu-like resources are counted in millicores; everything else in base units."""
    return resource == "cpu" or resource.endswith("/cpu") or resource in {"requests.cpu", "limits.cpu"}


def parse_exact(text: str | int | float) -> Fraction:
    """The exact value of a quantity. Raises QuantityError naming the input."""
    if isinstance(text, bool):
        raise QuantityError(f"invalid quantity {text!r}: a boolean is not a quantity")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise QuantityError(f"invalid quantity {text!r}: not a finite number")
        return Fraction(repr(text))  # what the YAML said: 0.5, not 0.5000000000000000277
    if not isinstance(text, str):
        raise QuantityError(f"invalid quantity {text!r}: expected a string or a number")
    s = text.strip()
    match = _QUANTITY.match(s) if len(s) <= MAX_LENGTH else None
    if match is None:
        raise QuantityError(
            f"invalid quantity {text!r}: expected a number with an optional suffix like 500m, 4, 4G, 4Gi"
        )
    value = _number(match["number"], text)
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix in _DECIMAL:
        return value * _DECIMAL[suffix]
    if suffix:
        return value * _power10(int(suffix[1:]), text)
    return value


def _number(digits: str, original: object) -> Fraction:
    try:
        return Fraction(digits)
    except (ValueError, ZeroDivisionError) as exc:
        raise QuantityError(f"invalid quantity {original!r}: {digits!r} is not a number") from exc


def _power10(exponent: int, original: object) -> Fraction:
    if abs(exponent) > _MAX_EXPONENT:
        raise QuantityError(f"invalid quantity {original!r}: exponent {exponent} is out of range")
    return Fraction(10) ** exponent


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def parse_quantity(resource: str, text: str | int | float) -> int:
    """The quantity as an integer in canonical units: millicores for cpu, base units otherwise.

    Rounds up, as Kubernetes' MilliValue()/Value() do ("0.1m" cpu is 1m; "1.5" bytes is 2).
    """
    value = parse_exact(text)
    if is_milli_resource(resource):
        value *= 1000
    return _ceil(value)


def format_quantity(resource: str, value: int) -> str:
    """The shortest exact form: cpu "12" or "12500m"; memory "14Gi" or "4G"; counts plain.

    A suffix is used only while the number before it stays short (under 100000): "11923550Ki" is exact
    but reads worse than the plain "12209715200".
    """
    if is_milli_resource(resource):
        return str(value // 1000) if value % 1000 == 0 else f"{value}m"
    best = str(value)
    if value == 0:
        return best
    for suffix, unit in _UNITS:
        short = abs(value // unit) < 100_000 if value % unit == 0 else False
        if short and len(candidate := f"{value // unit}{suffix}") < len(best):
            best = candidate
    return best
