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
# The whole-unit suffixes format_quantity may use, as integers, largest first (computed once).
_BINARY_UNITS: tuple[tuple[str, int], ...] = tuple(sorted(_BINARY.items(), key=lambda kv: -kv[1]))
_DECIMAL_UNITS: tuple[tuple[str, int], ...] = tuple(
    sorted(((k, int(v)) for k, v in _DECIMAL.items() if v >= 1), key=lambda kv: -kv[1]))
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
    """The one formatter of every quantity rayqueue writes (statuses, messages, the CLI): Kubernetes'
    canonical form. cpu: "12" or "12500m". Others as ``resource.Quantity.String()`` prints them
    (k8s.io/apimachinery/pkg/api/resource/quantity.go, ``CanonicalizeBytes``): a BinarySI quantity is
    printed in the largest binary suffix that keeps it exact (``AsCanonicalBase1024Bytes``: 12884901888 is
    "12Gi", 12209715200 is "11923550Ki", never rounded), one below 1024 as a decimal number; a DecimalSI one
    in the largest power-of-1000 suffix that keeps it exact (``AsCanonicalBytes``: "4G", "1500"). rayqueue
    keeps integers, not the format they were written in, so it prints the shorter of those two canonical
    forms (binary on a tie): "14Gi", "4G", "11923550Ki"; each parses back to the exact value.
    """
    if is_milli_resource(resource):
        return str(value // 1000) if value % 1000 == 0 else f"{value}m"
    if value == 0:
        return "0"
    binary = _canonical(value, _BINARY_UNITS) if abs(value) >= 1024 else str(value)
    decimal = _canonical(value, _DECIMAL_UNITS)
    return binary if len(binary) <= len(decimal) else decimal


def _canonical(value: int, units: tuple[tuple[str, int], ...]) -> str:
    """``value`` in the largest of ``units`` (largest first) that divides it exactly, else plain."""
    for suffix, unit in units:
        if value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)
