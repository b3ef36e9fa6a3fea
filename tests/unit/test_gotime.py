"""Go-layout timestamps: written exactly as Go writes them, read from every form kube-queue produces."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.gotime import GoTimeError, format_go, from_datetime, parse_go, to_datetime

SEED_NS = 1736472984_641181026  # 2025-01-10 01:36:24.641181026 UTC
MIN_NS = parse_go("0001-01-01 00:00:00 +0000 UTC")
MAX_NS = parse_go("9999-12-31 23:59:59.999999999 +0000 UTC")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        pytest.param(SEED_NS, "2025-01-10 01:36:24.641181026 +0000 UTC", id="the guide's timestamp"),
        pytest.param(
            1736472984_000000000, "2025-01-10 01:36:24 +0000 UTC", id="no dot when the fraction is zero"
        ),
        pytest.param(
            1736472984_500000000, "2025-01-10 01:36:24.5 +0000 UTC", id="trailing zeros are trimmed"
        ),
        pytest.param(1736472984_000000001, "2025-01-10 01:36:24.000000001 +0000 UTC", id="one nanosecond"),
        pytest.param(0, "1970-01-01 00:00:00 +0000 UTC", id="the epoch"),
        pytest.param(-1, "1969-12-31 23:59:59.999999999 +0000 UTC", id="before the epoch"),
    ],
)
def test_format_go_writes_go_layout_in_utc(ns: int, text: str) -> None:
    assert format_go(ns) == text
    assert parse_go(text) == ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        pytest.param(
            "2025-01-10 01:36:24.641181026 +0000 UTC m=+132100.596012828",
            SEED_NS,
            id="the monotonic suffix of Time.String is ignored",
        ),
        pytest.param(
            "2025-01-10 01:36:24.641181026 +0000 UTC m=-0.000000001",
            SEED_NS,
            id="a negative monotonic reading",
        ),
        pytest.param(
            "2025-01-10 09:36:24.641181026 +0800 CST",
            SEED_NS,
            id="another offset decides, whatever the zone name",
        ),
        pytest.param("2025-01-09 20:06:24.641181026 -0530 XYZ", SEED_NS, id="a negative offset with minutes"),
        pytest.param("2025-01-10 09:36:24.641181026 +0800 +08", SEED_NS, id="Go's numeric zone name"),
        pytest.param("2025-01-10 01:36:24.6 +0000 UTC", 1736472984_600000000, id="one fraction digit"),
        pytest.param("2025-01-10T01:36:24.641181026Z", SEED_NS, id="RFC 3339 with Z"),
        pytest.param("2025-01-10T09:36:24.641181026+08:00", SEED_NS, id="RFC 3339 with an offset"),
        pytest.param("2025-01-10T01:36:24Z", 1736472984_000000000, id="RFC 3339 without a fraction"),
    ],
)
def test_parse_go_accepts_every_form_kube_queue_writes(text: str, ns: int) -> None:
    assert parse_go(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="words"),
        pytest.param("2025-01-10 01:36:24", id="no offset"),
        pytest.param("2025-01-10 01:36:24 +0000", id="no zone name"),
        pytest.param("2025-01-10 01:36:24.1234567891 +0000 UTC", id="ten fraction digits"),
        pytest.param("2025-02-30 01:36:24 +0000 UTC", id="February 30th"),
        pytest.param("2025-01-10 24:00:00 +0000 UTC", id="hour 24"),
        pytest.param("2025-01-10 01:36:60 +0000 UTC", id="second 60"),
        pytest.param("2025-01-10 01:36:24 +2400 UTC", id="an offset of a day"),
        pytest.param("2025-01-10 01:36:24 +0000 UTC m=+1.5 extra", id="trailing garbage"),
        pytest.param("2025-01-10T01:36:24", id="RFC 3339 without a zone"),
        pytest.param("0001-01-01 00:00:00 +0100 CET", id="before year 1 in UTC"),
        pytest.param("2025-01-10 01:36:24 +0000 UTC" + " " * 200, id="an overlong string"),
        pytest.param(1736472984, id="a number"),
    ],
)
def test_a_bad_timestamp_raises_an_error_naming_it(text: object) -> None:
    with pytest.raises(GoTimeError, match="invalid timestamp") as info:
        parse_go(text)  # type: ignore[arg-type]
    assert repr(text)[:20] in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "ns",
    [
        pytest.param(MAX_NS + 1, id="after year 9999"),
        pytest.param(MIN_NS - 1, id="before year 1"),
        pytest.param(True, id="a boolean"),
        pytest.param(1.5, id="a float"),
    ],
)
def test_format_go_refuses_what_go_layout_cannot_hold(ns: int) -> None:
    with pytest.raises(GoTimeError):
        format_go(ns)


def test_from_datetime_is_exact_and_refuses_naive_datetimes() -> None:
    moment = dt.datetime(2025, 1, 10, 9, 36, 24, 641181, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert from_datetime(moment) == 1736472984_641181000
    assert to_datetime(1736472984_641181026) == moment
    with pytest.raises(GoTimeError, match="naive"):
        from_datetime(dt.datetime(2025, 1, 10))


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_format_then_parse_is_the_identity(ns: int) -> None:
    assert parse_go(format_go(ns)) == ns


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS), st.integers(min_value=0, max_value=10**15))
def test_parse_ignores_the_monotonic_reading(ns: int, mono: int) -> None:
    text = f"{format_go(ns)} m=+{mono // 10**9}.{mono % 10**9:09d}"
    assert parse_go(text) == ns


@given(st.datetimes(timezones=st.just(dt.UTC)))
def test_datetime_round_trips_through_the_go_layout(moment: dt.datetime) -> None:
    ns = from_datetime(moment)
    assert to_datetime(parse_go(format_go(ns))) == moment
    assert format_go(ns)[:19] == moment.isoformat(sep=" ")[:19]


@given(
    st.integers(min_value=MIN_NS + 86_400 * 10**9, max_value=MAX_NS - 86_400 * 10**9),
    st.integers(-1439, 1439),
)
def test_any_offset_names_the_same_instant(ns: int, offset_minutes: int) -> None:
    local = to_datetime(ns).astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    fraction = f"{ns % 10**9:09d}"
    text = f"{local.isoformat(sep=' ')[:19]}.{fraction} {sign}{hours:02d}{minutes:02d} ABC"
    assert parse_go(text) == ns
