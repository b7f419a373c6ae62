"""Schedules: hourly/daily/weekly or five-field cron, in UTC; next firing times; Celery."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab
from hypothesis import given, settings
from hypothesis import strategies as st

from rawquery_workers.beat import UtcCrontab
from rawquery_workers.errors import SpecError
from rawquery_workers.schedule import Schedule, parse_schedule

FORMS = (
    "hourly, daily, weekly or a five-field cron expression "
    "(minute hour day-of-month month day-of-week, UTC), e.g. '30 2 * * 1-5'"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "stored", "cron"),
    [
        ("hourly", "hourly", "0 * * * *"),
        ("daily", "daily", "0 0 * * *"),
        ("weekly", "weekly", "0 0 * * 0"),
        (" Daily ", "daily", "0 0 * * *"),
        ("*/15 9-17 * * mon-fri", "*/15 9-17 * * mon-fri", "*/15 9-17 * * mon-fri"),
        ("0  6 *\t* *", "0 6 * * *", "0 6 * * *"),
        ("0 12 1 JAN,Jul *", "0 12 1 jan,jul *", "0 12 1 jan,jul *"),
        ("5,35 */2 1-15/7 * 7", "5,35 */2 1-15/7 * 7", "5,35 */2 1-15/7 * 7"),
        ("5/20 0 * * *", "5/20 0 * * *", "5/20 0 * * *"),
        ("0 0 29 2 *", "0 0 29 2 *", "0 0 29 2 *"),
    ],
)
def test_valid_schedules(text: str, stored: str, cron: str) -> None:
    assert parse_schedule(text) == Schedule(stored, cron)


def test_schedule_is_a_frozen_value() -> None:
    schedule = parse_schedule("daily")
    with pytest.raises(AttributeError):
        schedule.text = "hourly"  # type: ignore[misc]
    assert parse_schedule("daily") == schedule and hash(parse_schedule("daily")) == hash(schedule)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"'' is not {FORMS}"),
        ("monthly", f"'monthly' is not {FORMS}"),
        ("every day", f"'every day' is not {FORMS} (it has 2 fields)"),
        ("* * * *", f"'* * * *' is not {FORMS} (it has 4 fields)"),
        ("0 * * * * *", f"'0 * * * * *' is not {FORMS} (it has 6 fields)"),
        ("61 * * * *", "minute field '61' in '61 * * * *': 61 is out of range 0-59"),
        ("0 24 * * *", "hour field '24' in '0 24 * * *': 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0' in '0 0 0 * *': 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field '13' in '0 0 * 13 *': 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8' in '0 0 * * 8': 8 is out of range 0-7"),
        (
            "0 0 * foo *",
            "month field 'foo' in '0 0 * foo *': 'foo' is not a number or a name (jan-dec)",
        ),
        (
            "0 0 * * monday",
            "day-of-week field 'monday' in '0 0 * * monday': 'monday' is not a number or a "
            "name (sun-sat)",
        ),
        ("1-x * * * *", "minute field '1-x' in '1-x * * * *': 'x' is not a number"),
        (
            "*/0 * * * *",
            "minute field '*/0' in '*/0 * * * *': step '0' must be a whole number of at least 1",
        ),
        (
            "*/x * * * *",
            "minute field '*/x' in '*/x * * * *': step 'x' must be a whole number of at least 1",
        ),
        (
            "5-2 * * * *",
            "minute field '5-2' in '5-2 * * * *': range 5-2 goes backwards; write it low-high",
        ),
        ("1,,2 * * * *", "minute field '1,,2' in '1,,2 * * * *': a comma list has an empty item"),
        ("*-5 * * * *", "minute field '*-5' in '*-5 * * * *': '*-5': '*' cannot start a range"),
        (
            "1-2-3 * * * *",
            "minute field '1-2-3' in '1-2-3 * * * *': '1-2-3' is not *, a value, a range a-b or "
            "a step like */15",
        ),
        (
            "-1 * * * *",
            "minute field '-1' in '-1 * * * *': '-1' is not *, a value, a range a-b or a step "
            "like */15",
        ),
        (
            "0 0 30 2 *",
            "'0 0 30 2 *' never fires: no month in its month field has a day in its "
            "day-of-month field",
        ),
        (
            "0 0 31 4,6 *",
            "'0 0 31 4,6 *' never fires: no month in its month field has a day in its "
            "day-of-month field",
        ),
    ],
)
def test_invalid_schedules_name_the_wrong_field(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_schedule(text)
    assert str(info.value) == f"--schedule: {message}"
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("hourly", utc(2025, 3, 5, 10, 7, 30), utc(2025, 3, 5, 11, 0)),
        ("hourly", utc(2025, 3, 5, 11, 0), utc(2025, 3, 5, 12, 0)),  # strictly after
        ("hourly", utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1, 0, 0)),
        ("daily", utc(2025, 3, 5, 0, 0, 0, 1), utc(2025, 3, 6, 0, 0)),
        ("daily", utc(2024, 2, 28, 12, 0), utc(2024, 2, 29, 0, 0)),
        ("weekly", utc(2025, 3, 5, 10, 0), utc(2025, 3, 9, 0, 0)),  # a Wednesday -> Sunday
        ("weekly", utc(2025, 3, 9, 0, 0), utc(2025, 3, 16, 0, 0)),
        ("*/15 9-17 * * mon-fri", utc(2025, 3, 5, 10, 7), utc(2025, 3, 5, 10, 15)),
        ("*/15 9-17 * * mon-fri", utc(2025, 3, 5, 17, 45), utc(2025, 3, 6, 9, 0)),
        ("*/15 9-17 * * mon-fri", utc(2025, 3, 7, 18, 0), utc(2025, 3, 10, 9, 0)),  # Fri->Mon
        ("5 4 * * 7", utc(2025, 3, 5, 0, 0), utc(2025, 3, 9, 4, 5)),  # 7 is Sunday
        ("5 4 * * sun", utc(2025, 3, 5, 0, 0), utc(2025, 3, 9, 4, 5)),
        ("0 12 1 jan,jul *", utc(2025, 3, 5, 0, 0), utc(2025, 7, 1, 12, 0)),
        ("0 12 1 jan,jul *", utc(2025, 7, 1, 12, 0), utc(2026, 1, 1, 12, 0)),
        ("0 0 29 2 *", utc(2025, 3, 1, 0, 0), utc(2028, 2, 29, 0, 0)),
        ("0 0 31 * *", utc(2025, 4, 1, 0, 0), utc(2025, 5, 31, 0, 0)),
        # both day fields restricted: either matches (the 13th, or any Friday)
        ("0 0 13 * fri", utc(2025, 3, 5, 0, 0), utc(2025, 3, 7, 0, 0)),
        ("0 0 13 * fri", utc(2025, 3, 11, 0, 0), utc(2025, 3, 13, 0, 0)),
        # a day field starting with '*' does not widen the match
        ("0 0 */2 * fri", utc(2025, 3, 5, 0, 0), utc(2025, 3, 7, 0, 0)),
        ("0 0 */2 * fri", utc(2025, 3, 7, 0, 0), utc(2025, 3, 21, 0, 0)),
        ("5/20 0 * * *", utc(2025, 3, 5, 0, 5), utc(2025, 3, 5, 0, 25)),
        ("30 2 * * 1-5", utc(2025, 3, 8, 0, 0), utc(2025, 3, 10, 2, 30)),
    ],
)
def test_next_after(text: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(text).next_after(after) == expected


def test_next_after_naive_is_utc_and_other_zones_are_converted() -> None:
    daily = parse_schedule("0 6 * * *")
    assert daily.next_after(datetime(2025, 3, 5, 5, 59)) == utc(2025, 3, 5, 6, 0)
    paris = datetime(2025, 3, 5, 6, 30, tzinfo=ZoneInfo("Europe/Paris"))  # 05:30 UTC
    result = daily.next_after(paris)
    assert result == utc(2025, 3, 5, 6, 0) and result.tzinfo is UTC


def _brute_force(schedule: Schedule, after: datetime) -> datetime:
    fields = schedule.fields
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        if (
            t.minute in fields.minutes
            and t.hour in fields.hours
            and t.month in fields.months
            and fields.day_matches(t)
        ):
            return t
        t += timedelta(minutes=1)


@settings(max_examples=60, deadline=None)
@given(
    minute=st.sampled_from(["*", "0", "*/7", "5-20/5", "59", "1,31"]),
    hour=st.sampled_from(["*", "0", "9-17", "*/5", "23"]),
    day=st.sampled_from(["*", "1", "1-10", "*/3", "28-31"]),
    weekday=st.sampled_from(["*", "mon-fri", "0", "6,0", "*/2"]),
    after=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31)),
)
def test_next_after_agrees_with_checking_every_minute(
    minute: str, hour: str, day: str, weekday: str, after: datetime
) -> None:
    schedule = parse_schedule(f"{minute} {hour} {day} * {weekday}")
    start = after.replace(tzinfo=UTC)
    assert schedule.next_after(start) == _brute_force(schedule, start)


def test_day_matching_uses_cron_weekdays() -> None:
    fields = parse_schedule("0 0 * * 1").fields
    assert fields.weekdays == frozenset({1})
    assert fields.day_matches(utc(2025, 3, 10))  # a Monday
    assert not fields.day_matches(utc(2025, 3, 9))
    assert parse_schedule("0 0 * * 7").fields.weekdays == frozenset({0})


# --- Celery ----------------------------------------------------------------------------------


def test_utc_crontab_is_a_crontab_with_the_same_fields() -> None:
    beat = UtcCrontab(parse_schedule("*/15 9-17 * * mon-fri"))
    assert isinstance(beat, crontab) and isinstance(beat, UtcCrontab)
    assert beat.minute == {0, 15, 30, 45}
    assert beat.hour == set(range(9, 18))
    assert beat.day_of_week == {1, 2, 3, 4, 5}
    assert beat.day_of_month == set(range(1, 32))
    assert repr(beat) == "<UtcCrontab: */15 9-17 * * mon-fri (UTC)>"


def test_utc_crontab_computes_in_utc_whatever_the_app_timezone() -> None:
    app = Celery("test-schedule", set_as_current=False)
    app.conf.timezone = "Asia/Tokyo"
    schedule = parse_schedule("0 6 * * *")
    now = utc(2025, 3, 5, 6, 0, 30)
    beat = UtcCrontab(schedule, nowfun=lambda: now, app=app)
    due, wait = beat.is_due(utc(2025, 3, 4, 6, 0))
    assert due and wait == pytest.approx(
        timedelta(hours=23, minutes=59, seconds=30).total_seconds()
    )
    due, wait = beat.is_due(utc(2025, 3, 5, 6, 0, 5))
    assert not due and wait == pytest.approx(86370.0)
    tokyo_morning = datetime(2025, 3, 5, 15, 0, 5, tzinfo=ZoneInfo("Asia/Tokyo"))  # 06:00:05Z
    assert beat.remaining_estimate(tokyo_morning) == timedelta(hours=23, minutes=59, seconds=30)


def test_utc_crontab_uses_either_day_rule_like_cron() -> None:
    schedule = parse_schedule("0 0 13 * fri")
    now = utc(2025, 3, 7, 0, 0, 10)  # Friday the 7th
    beat = UtcCrontab(schedule, nowfun=lambda: now, app=Celery("t", set_as_current=False))
    assert beat.is_due(utc(2025, 3, 6, 0, 0)).is_due


def test_celery_schedule_survives_pickling() -> None:
    beat = UtcCrontab(parse_schedule("weekly"))
    copy = pickle.loads(pickle.dumps(beat))
    assert isinstance(copy, UtcCrontab)
    assert copy.schedule == parse_schedule("weekly")
    assert copy == beat
