"""The UTC hour (``billing_pipeline.core.hours.Hour``): its two texts, its checks, its arithmetic.

Pure; tests/integration/test_hour_sql.py holds the SQL spelling of the hour to ``Hour.text``.
"""

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from billing_pipeline.core.errors import InputError
from billing_pipeline.core.hours import HOUR, Hour

TEN = datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_the_two_texts_of_an_hour():
    hour = Hour(TEN)
    # The ledger reference / idempotency key / dbt var form: what existing entries hold.
    assert hour.text == "2026-11-24T10:00:00+00:00"
    assert str(hour) == hour.text
    # The Dagster partition key.
    assert hour.key == "2026-11-24-10:00"
    assert hour.start == TEN
    assert hour.end == datetime(2026, 11, 24, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24-10:00",
        "2026-11-24T10:00:00+00:00",
        "2026-11-24T10:00Z",
        "2026-11-24T10:00:00",
        " 2026-11-24T11:00:00+01:00 ",
    ],
)
def test_parse_reads_every_spelling_of_the_same_hour(text):
    assert Hour.parse(text) == Hour(TEN)


def test_round_trips_through_both_texts():
    for n in range(0, 24 * 400, 37):  # a year and more, every 37th hour
        hour = Hour(TEN) + n
        assert Hour.parse(hour.key) == hour
        assert Hour.parse(hour.text) == hour
        assert Hour.parse(hour.text).text == hour.text


@pytest.mark.parametrize(
    "text, says",
    [
        ("2026-11-24T10:30:00+00:00", "not on an hour boundary"),
        ("2026-11-24T10:00:01Z", "not on an hour boundary"),
        ("2026-11-24-10:15", "not on an hour boundary"),
        ("yesterday", "is not an hour"),
        ("2026-13-01T00:00Z", "is not an hour"),
        ("", "is not an hour"),
    ],
)
def test_parse_refuses_naming_the_input(text, says):
    with pytest.raises(InputError) as caught:
        Hour.parse(text)
    assert repr(text) in str(caught.value)
    assert says in str(caught.value)


def test_the_constructor_takes_only_utc_hours():
    with pytest.raises(InputError, match="not a UTC time"):
        Hour(datetime(2026, 11, 24, 10))
    with pytest.raises(InputError, match="not a UTC time"):
        Hour(datetime(2026, 11, 24, 11, tzinfo=ZoneInfo("Europe/Berlin")))
    with pytest.raises(InputError, match="2026-11-24T10:05:00"):
        Hour(TEN.replace(minute=5))
    with pytest.raises(InputError, match="must be a datetime"):
        Hour("2026-11-24T10:00Z")


def test_of_converts_and_containing_truncates():
    berlin = datetime(2026, 11, 24, 11, tzinfo=ZoneInfo("Europe/Berlin"))  # 10:00 UTC
    assert Hour.of(berlin) == Hour(TEN)
    assert Hour.of(berlin).start.tzinfo is UTC
    assert Hour.of(datetime(2026, 11, 24, 10)) == Hour(TEN)  # naive is UTC
    with pytest.raises(InputError, match="not on an hour boundary"):
        Hour.of(TEN + timedelta(minutes=59))
    assert Hour.containing(TEN + timedelta(minutes=59, seconds=59)) == Hour(TEN)
    assert Hour.containing(TEN) == Hour(TEN)


def test_equal_hours_are_one_value():
    other_utc = datetime(2026, 11, 24, 10, tzinfo=ZoneInfo("UTC"))
    assert Hour(other_utc) == Hour(TEN)
    assert hash(Hour(other_utc)) == hash(Hour(TEN))
    assert len({Hour(TEN), Hour(other_utc), Hour.parse("2026-11-24-10:00")}) == 1


def test_arithmetic_and_order():
    hour = Hour(TEN)
    assert (hour + 1).text == "2026-11-24T11:00:00+00:00"
    assert (hour + 14).key == "2026-11-25-00:00"
    assert (hour - 11).key == "2026-11-23-23:00"
    assert (hour + 5) - hour == 5
    assert hour - (hour + 5) == -5
    assert hour < hour + 1 <= hour + 1
    assert sorted([hour + 2, hour, hour + 1]) == [hour, hour + 1, hour + 2]
    assert max(hour, hour + 3) == hour + 3


def test_range_is_half_open():
    hours = Hour.range(Hour(TEN), Hour(TEN) + 3)
    assert [h.key for h in hours] == ["2026-11-24-10:00", "2026-11-24-11:00", "2026-11-24-12:00"]
    assert Hour.range(Hour(TEN), Hour(TEN)) == []
    assert Hour.range(Hour(TEN) + 1, Hour(TEN)) == []


def test_every_utc_hour_is_an_hour_across_daylight_saving():
    # Europe changes clocks at 01:00 UTC on 2026-03-29 and 2026-10-25: UTC hours do not notice.
    for day in (datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC)):
        hours = Hour.range(Hour(day), Hour(day) + 24)
        assert len(hours) == 24
        assert all(b.start - a.start == HOUR == timedelta(seconds=3600) for a, b in itertools.pairwise(hours))
        assert [h.text[11:13] for h in hours] == [f"{n:02d}" for n in range(24)]
    # 02:30 on 2026-03-29 does not exist in Berlin; 00:00 UTC that day is 01:00 there.
    assert Hour.of(datetime(2026, 3, 29, 1, tzinfo=ZoneInfo("Europe/Berlin"))).text == "2026-03-29T00:00:00+00:00"
    assert Hour.of(datetime(2026, 3, 29, 3, tzinfo=ZoneInfo("Europe/Berlin"))).text == "2026-03-29T01:00:00+00:00"


def test_partition_keys_are_the_partitions_keys():
    from billing_pipeline.core.partitions import hourly_partitions

    hour = Hour(datetime(2025, 6, 2, 10, tzinfo=UTC))
    window = hourly_partitions.time_window_for_partition_key(hour.key)
    assert Hour.of(window.start) == hour
    assert hourly_partitions.get_partition_key_for_timestamp(hour.start.timestamp()) == hour.key
