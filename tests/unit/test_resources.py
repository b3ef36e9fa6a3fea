"""Resources: exact arithmetic and fit checks that name each exceeding resource with its numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.quantity import QuantityError
from common.resources import Excess, Resources


def res(**kw: str) -> Resources:
    return Resources.parse({k.replace("_", "/"): v for k, v in kw.items()})


def test_parse_uses_canonical_units_and_keeps_declared_zeros() -> None:
    r = Resources.parse({"cpu": "12500m", "memory": "4Gi", "nvidia.com/gpu": 0})
    assert dict(r) == {"cpu": 12500, "memory": 4 * 2**30, "nvidia.com/gpu": 0}
    assert r == {"cpu": 12500, "memory": 4 * 2**30}, "equality compares amounts"
    assert dict(r - Resources({"cpu": 12500})) == {"memory": 4 * 2**30}, "sums drop zeros"


def test_parse_error_names_the_path() -> None:
    with pytest.raises(QuantityError, match=r"spec\.root\.max\.cpu: invalid quantity 'x'"):
        Resources.parse({"cpu": "x"}, "spec.root.max")


def test_arithmetic_is_exact_and_immutable() -> None:
    a, b = res(cpu="1"), res(cpu="500m", memory="1Gi")
    assert a + b == {"cpu": 1500, "memory": 2**30}
    assert (a + b) - b == a
    assert a == {"cpu": 1000}
    assert b.scaled(3) == {"cpu": 1500, "memory": 3 * 2**30}
    assert (a - b).clamp_low() == {"cpu": 500}


def test_exceeding_names_each_resource_with_numbers() -> None:
    used, request, limit = res(cpu="12500m"), res(cpu="12500m", memory="4G"), res(cpu="14", memory="14Gi")
    (excess,) = used.exceeding(request, limit)
    assert excess == Excess("cpu", 12500, 12500, 14000)
    assert str(excess) == "cpu used 12500m + request 12500m > max 14"
    assert not used.fits(request, limit)


@pytest.mark.parametrize(
    ("used", "req", "limit", "fits"),
    [
        pytest.param({"cpu": 1000}, {"cpu": 1000}, {"cpu": 2000}, True, id="exactly at the limit fits"),
        pytest.param({"cpu": 1001}, {"cpu": 1000}, {"cpu": 2000}, False, id="one millicore over does not fit"),
        pytest.param({}, {"ephemeral-storage": 10}, {"cpu": 1}, True, id="a resource the limit does not name is unbounded"),
        pytest.param({"cpu": 5000}, {"memory": 1}, {"cpu": 1000, "memory": 10}, True,
                     id="usage already over on a resource not requested does not block"),
        pytest.param({}, {"nvidia.com/gpu": 1}, {"nvidia.com/gpu": 0}, False, id="a zero limit refuses any request"),
    ],
)
def test_fits(used: dict[str, int], req: dict[str, int], limit: dict[str, int], fits: bool) -> None:
    assert Resources(used).fits(Resources(req), Resources(limit)) is fits


def test_api_form_is_short_and_exact() -> None:
    assert res(cpu="12500m", memory="14Gi").to_api() == {"cpu": "12500m", "memory": "14Gi"}
    assert str(res(cpu="2")) == "{cpu: 2}"


_res = st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), st.integers(0, 10**12)).map(Resources)


@given(_res, _res, _res)
def test_addition_is_associative_and_subtraction_inverts_it(a: Resources, b: Resources, c: Resources) -> None:
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a
    assert hash(a + b) == hash(b + a)
    assert hash(a) == hash(Resources({k: v for k, v in a.items() if v})), "equal values hash equal"


@given(_res, _res, _res)
def test_fits_agrees_with_a_per_resource_comparison(used: Resources, req: Resources, limit: Resources) -> None:
    expected = all(used.get(k) + req.get(k) <= limit[k] for k in limit if req.get(k) > 0)
    assert used.fits(req, limit) is expected
