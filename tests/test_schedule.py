"""Schedules: hourly/daily/weekly or five-field cron, in UTC; next firing times; due slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawquery_workers.distributed.beat import due_slot
from rawquery_workers.errors import SpecError
from rawquery_workers.registry.schedule import Schedule, parse_schedule

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


def _bad(name: str, part: str, text: str, values: str) -> str:
    return (
        f"{name} field '{part}' in '{text}' is not valid: a {name} is {values}; "
        "write *, a value, a range a-b, a step like */15 or a comma list of them"
    )


MONTHS = "1-12 or jan-dec"
WEEKDAYS = "0-7 or sun-sat (0 and 7 are Sunday)"
NEVER = "never fires: no month in its month field has a day in its day-of-month field"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"'' is not {FORMS}"),
        ("monthly", f"'monthly' is not {FORMS}"),
        ("every day", f"'every day' is not {FORMS} (it has 2 fields)"),
        ("* * * *", f"'* * * *' is not {FORMS} (it has 4 fields)"),
        ("0 * * * * *", f"'0 * * * * *' is not {FORMS} (it has 6 fields)"),
        ("61 * * * *", _bad("minute", "61", "61 * * * *", "0-59")),
        ("0 24 * * *", _bad("hour", "24", "0 24 * * *", "0-23")),
        ("0 0 0 * *", _bad("day-of-month", "0", "0 0 0 * *", "1-31")),
        ("0 0 * 13 *", _bad("month", "13", "0 0 * 13 *", MONTHS)),
        ("0 0 * * 8", _bad("day-of-week", "8", "0 0 * * 8", WEEKDAYS)),
        ("0 0 * foo *", _bad("month", "foo", "0 0 * foo *", MONTHS)),
        ("0 0 * * monday", _bad("day-of-week", "monday", "0 0 * * monday", WEEKDAYS)),
        ("1-x * * * *", _bad("minute", "1-x", "1-x * * * *", "0-59")),
        ("*/0 * * * *", _bad("minute", "*/0", "*/0 * * * *", "0-59")),
        ("*/x * * * *", _bad("minute", "*/x", "*/x * * * *", "0-59")),
        ("5-2 * * * *", _bad("minute", "5-2", "5-2 * * * *", "0-59")),
        ("1,,2 * * * *", _bad("minute", "1,,2", "1,,2 * * * *", "0-59")),
        ("*-5 * * * *", _bad("minute", "*-5", "*-5 * * * *", "0-59")),
        ("1-2-3 * * * *", _bad("minute", "1-2-3", "1-2-3 * * * *", "0-59")),
        ("-1 * * * *", _bad("minute", "-1", "-1 * * * *", "0-59")),
        # cronsim's extensions are not part of the schedule grammar
        ("0 0 L * *", _bad("day-of-month", "L", "0 0 L * *", "1-31")),
        ("0 0 LW * *", _bad("day-of-month", "LW", "0 0 LW * *", "1-31")),
        ("0 0 * * 5L", _bad("day-of-week", "5L", "0 0 * * 5L", WEEKDAYS)),
        ("0 0 * * mon#1", _bad("day-of-week", "mon#1", "0 0 * * mon#1", WEEKDAYS)),
        ("0 0 * * ?", _bad("day-of-week", "?", "0 0 * * ?", WEEKDAYS)),
        ("0 0 30 2 *", f"'0 0 30 2 *' {NEVER}"),
        ("0 0 31 4,6 *", f"'0 0 31 4,6 *' {NEVER}"),
    ],
)
def test_invalid_schedules_name_the_wrong_field(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_schedule(text)
    assert str(info.value) == f"--schedule: {message}"
    assert info.value.exit_code == 2


def test_a_number_too_long_to_read_is_a_bad_field_not_a_crash() -> None:
    text = "9" * 5000 + " * * * *"
    with pytest.raises(SpecError, match="^--schedule: minute field '9+' in '9+ \\* "):
        parse_schedule(text)


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


def _allowed(field: str, low: int, high: int) -> set[int]:
    """What a numeric cron field allows, spelled out here independently of cronsim."""
    allowed: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        first, _, last = span.partition("-")
        start = low if first == "*" else int(first)
        end = high if first == "*" or (step and not last) else int(last or first)
        allowed.update(range(start, end + 1, int(step or 1)))
    return allowed


def _brute_force(cron: str, after: datetime) -> datetime:
    """The first minute after `after` that matches `cron`, checking minute by minute."""
    minute, hour, day, month, weekday = cron.split(" ")
    minutes, hours = _allowed(minute, 0, 59), _allowed(hour, 0, 23)
    days, months = _allowed(day, 1, 31), _allowed(month, 1, 12)
    weekdays = {d % 7 for d in _allowed(weekday.replace("mon-fri", "1-5"), 0, 7)}
    either = not day.startswith("*") and not weekday.startswith("*")  # Vixie's day rule
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        day_ok, weekday_ok = t.day in days, (t.weekday() + 1) % 7 in weekdays
        if (
            t.minute in minutes
            and t.hour in hours
            and t.month in months
            and ((day_ok or weekday_ok) if either else (day_ok and weekday_ok))
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
    assert schedule.next_after(start) == _brute_force(schedule.cron, start)


def test_weekdays_count_from_sunday_and_seven_is_sunday_too() -> None:
    monday = parse_schedule("0 0 * * 1")
    assert monday.next_after(utc(2025, 3, 9)) == utc(2025, 3, 10)  # Sunday -> Monday
    assert parse_schedule("0 0 * * 7").next_after(utc(2025, 3, 10)) == utc(2025, 3, 16)


def test_times_after_lists_the_firing_times_in_order() -> None:
    times = parse_schedule("0 */8 * * *").times_after(utc(2025, 3, 5, 7, 59))
    assert [next(times) for _ in range(4)] == [
        utc(2025, 3, 5, 8, 0),
        utc(2025, 3, 5, 16, 0),
        utc(2025, 3, 6, 0, 0),
        utc(2025, 3, 6, 8, 0),
    ]


# --- beat's due slot -------------------------------------------------------------------------


def test_due_slot_is_computed_in_utc_whatever_the_callers_timezone() -> None:
    created = utc(2025, 3, 1)
    tokyo = ZoneInfo("Asia/Tokyo")
    # 15:00:30 in Tokyo is 06:00:30 UTC: the 06:00 UTC slot of the day is due
    now = datetime(2025, 3, 5, 15, 0, 30, tzinfo=tokyo)
    assert due_slot("0 6 * * *", None, created, now) == utc(2025, 3, 5, 6, 0)
    last = datetime(2025, 3, 5, 15, 0, tzinfo=tokyo)  # that slot, recorded in Tokyo time
    assert due_slot("0 6 * * *", last, created, now) is None
    assert due_slot("0 6 * * *", last, created, now + timedelta(days=1)) == utc(2025, 3, 6, 6)


def test_due_slot_uses_either_day_rule_like_cron() -> None:
    # Friday the 7th: due by the day-of-week field although the 13th is a week away
    now = utc(2025, 3, 7, 0, 0, 10)
    assert due_slot("0 0 13 * fri", utc(2025, 3, 6), utc(2025, 3, 1), now) == utc(2025, 3, 7)
    assert due_slot("0 0 13 * *", utc(2025, 3, 6), utc(2025, 3, 1), now) is None


def test_due_slot_collapses_a_long_outage_into_its_latest_slot() -> None:
    created = utc(2025, 3, 1)
    now = utc(2025, 3, 8, 12, 34, 56)  # a week of minutely slots missed
    assert due_slot("* * * * *", None, created, now) == utc(2025, 3, 8, 12, 34)
