"""Kubernetes quantities parse to exact integers in canonical units and format back."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.quantity import QuantityError, format_quantity, parse_exact, parse_quantity


@pytest.mark.parametrize(
    ("resource", "text", "expected"),
    [
        pytest.param("cpu", "100m", 100, id="cpu millicores stay millicores"),
        pytest.param("cpu", "4", 4000, id="whole cpus become millicores"),
        pytest.param("cpu", 12, 12000, id="a JSON integer is a quantity"),
        pytest.param("cpu", 0.5, 500, id="a JSON float is read as written"),
        pytest.param("cpu", "1.5", 1500, id="a decimal cpu is exact"),
        pytest.param("cpu", ".5", 500, id="a leading dot is allowed as in Kubernetes"),
        pytest.param("cpu", "1e3", 1_000_000, id="a decimal exponent multiplies"),
        pytest.param("cpu", "1.5e3", 1_500_000, id="a decimal exponent on a decimal number"),
        pytest.param("cpu", "0.1m", 1, id="below a millicore rounds up as MilliValue does"),
        pytest.param("cpu", "250u", 1, id="micro cpu rounds up to one millicore"),
        pytest.param("memory", "4G", 4 * 10**9, id="G is decimal"),
        pytest.param("memory", "4Gi", 4 * 2**30, id="Gi is binary"),
        pytest.param("memory", "12Ki", 12 * 1024, id="Ki is binary"),
        pytest.param("memory", "200Mi", 200 * 2**20, id="Mi is binary"),
        pytest.param("memory", "1.5", 2, id="a fraction of a byte rounds up"),
        pytest.param("memory", "1E3", 1000, id="capital E is an exponent"),
        pytest.param("memory", "2k", 2000, id="k is decimal"),
        pytest.param("nvidia.com/gpu", "2", 2, id="extended resources count whole units"),
        pytest.param("memory", "  4Gi ", 4 * 2**30, id="surrounding white space is ignored"),
        pytest.param("cpu", "-1", -1000, id="a negative quantity parses, validation refuses it"),
    ],
)
def test_parse_quantity(resource: str, text: str | int | float, expected: int) -> None:
    assert parse_quantity(resource, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="letters"),
        pytest.param("1Kb", id="an unknown suffix"),
        pytest.param("1.2.3", id="two dots"),
        pytest.param("--1", id="two signs"),
        pytest.param("1e99999", id="an absurd exponent"),
        pytest.param("1" * 100, id="an overlong string"),
        pytest.param(True, id="a boolean"),
        pytest.param(float("nan"), id="not a number"),
        pytest.param(None, id="null"),
    ],
)
def test_invalid_quantities_raise_an_error_naming_them(text: object) -> None:
    with pytest.raises(QuantityError, match="invalid quantity"):
        parse_quantity("cpu", text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("resource", "value", "expected"),
    [
        pytest.param("cpu", 12500, "12500m", id="cpu with a fraction prints millicores"),
        pytest.param("cpu", 14000, "14", id="whole cpus print plain"),
        pytest.param("memory", 14 * 2**30, "14Gi", id="binary memory prints Gi"),
        pytest.param("memory", 4 * 10**9, "4G", id="decimal memory prints G"),
        pytest.param("memory", 12 * 10**9 + 200 * 2**20, "11923550Ki", id="memory that is no whole Gi prints in the largest binary suffix that is exact, as Quantity.String"),
        pytest.param("memory", 12 * 2**30, "12Gi", id="12884901888 bytes print 12Gi"),
        pytest.param("memory", 1000, "1k", id="memory below 1Ki prints decimal, as Quantity.String"),
        pytest.param("memory", 1025, "1025", id="memory exact in no suffix prints plain bytes"),
        pytest.param("memory", 0, "0", id="zero"),
        pytest.param("nvidia.com/gpu", 4, "4", id="counts print plain"),
    ],
)
def test_format_quantity(resource: str, value: int, expected: str) -> None:
    assert format_quantity(resource, value) == expected


_suffixes = st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"])


@given(st.integers(min_value=0, max_value=10**6), _suffixes, st.sampled_from(["cpu", "memory", "pods"]))
def test_format_then_parse_round_trips(number: int, suffix: str, resource: str) -> None:
    value = parse_quantity(resource, f"{number}{suffix}")
    assert parse_quantity(resource, format_quantity(resource, value)) == value


@given(
    st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False),
)
def test_parsing_preserves_order(a: object, b: object) -> None:
    qa, qb = parse_exact(str(a)), parse_exact(str(b))
    assert (qa < qb) == (Fraction(str(a)) < Fraction(str(b)))
    assert (parse_quantity("cpu", str(a)) <= parse_quantity("cpu", str(b))) or qa > qb


@given(st.integers(min_value=0, max_value=2**40))
def test_binary_and_decimal_forms_agree(n: int) -> None:
    assert parse_quantity("memory", f"{n}Ki") == n * 1024
    assert parse_quantity("memory", f"{n}k") == n * 1000
