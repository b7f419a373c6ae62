"""Sync schedules: `hourly`, `daily`, `weekly` or a five-field cron expression, all in UTC.

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
                                jan-dec  sun-sat

Each field is `*`, a number or name, a range `a-b`, any of those with a step (`*/15`,
`1-10/2`, `5/10` = 5 up to the maximum), or a comma list of them. As in Vixie cron, when
both day fields are restricted (neither starts with `*`) a day matches if either does.

`Schedule.next_after` is the one source of truth for firing times; `beat.UtcCrontab` wraps
it in a `celery.schedules.crontab` that always computes in UTC, whatever the Celery app's
timezone (here no Celery: `rq connect` checks a schedule without loading it).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from rawquery_workers.errors import SpecError

KEYWORDS = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FORMS = (
    "hourly, daily, weekly or a five-field cron expression "
    "(minute hour day-of-month month day-of-week, UTC), e.g. '30 2 * * 1-5'"
)


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i

    def value(self, token: str) -> int:
        if token.isdigit():
            number = int(token)
            if not self.low <= number <= self.high:
                raise ValueError(f"{number} is out of range {self.low}-{self.high}")
            return number
        if token.lower() in self.names:
            return self.low + self.names.index(token.lower())
        kinds = (
            f"a number or a name ({self.names[0]}-{self.names[-1]})" if self.names else "a number"
        )
        raise ValueError(f"'{token}' is not {kinds}")


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS),
    _FieldSpec("day-of-week", 0, 7, _DAYS),
)


@dataclass(frozen=True, slots=True)
class CronFields:
    """A cron expression expanded into the values each field allows."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool  # the day-of-month field does not start with '*'
    weekdays_restricted: bool

    def day_matches(self, when: datetime) -> bool:
        day_ok = when.day in self.days
        weekday_ok = (when.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: `text` as stored and shown, `cron` its five-field form (UTC)."""

    text: str
    cron: str

    @property
    def fields(self) -> CronFields:
        return _expand(self.cron)

    def next_after(self, when: datetime) -> datetime:
        """The first firing time strictly after `when` (naive means UTC), as aware UTC."""
        return _next_after(self.fields, as_utc(when))


def parse_schedule(text: str) -> Schedule:
    """`hourly` | `daily` | `weekly` | five-field cron -> Schedule; SpecError naming the bad
    field otherwise."""
    cleaned = " ".join(text.split())
    if cleaned.lower() in KEYWORDS:
        return Schedule(cleaned.lower(), KEYWORDS[cleaned.lower()])
    parts = cleaned.split(" ") if cleaned else []
    if len(parts) != 5:
        count = f" (it has {len(parts)} fields)" if len(parts) > 1 else ""
        raise SpecError(f"--schedule: '{cleaned}' is not {_FORMS}{count}")
    for spec, part in zip(_FIELDS, parts, strict=True):
        try:
            _expand_field(part, spec)
        except ValueError as exc:
            raise SpecError(
                f"--schedule: {spec.name} field '{part}' in '{cleaned}': {exc}"
            ) from None
    cron = " ".join(part.lower() for part in parts)
    if _never_fires(_expand(cron)):
        raise SpecError(
            f"--schedule: '{cleaned}' never fires: no month in its month field has a day "
            "in its day-of-month field"
        )
    return Schedule(cron, cron)


# --- parsing -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _expand(cron: str) -> CronFields:
    parts = cron.split(" ")
    values = [_expand_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    return CronFields(
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def _expand_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError("a comma list has an empty item")
        values.update(_expand_item(item, spec))
    return frozenset(values)


def _expand_item(item: str, spec: _FieldSpec) -> range:
    match = re.fullmatch(r"([^/-]+)(?:-([^/-]+))?(?:/(.*))?", item)
    if match is None:
        raise ValueError(f"'{item}' is not *, a value, a range a-b or a step like */15")
    first, last, step_text = match.groups()
    step = 1
    if step_text is not None:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ValueError(f"step '{step_text}' must be a whole number of at least 1")
        step = int(step_text)
    if first == "*":
        if last is not None:
            raise ValueError(f"'{item}': '*' cannot start a range")
        return range(spec.low, spec.high + 1, step)
    low = spec.value(first)
    if last is None:
        high = spec.high if step_text is not None else low
    else:
        high = spec.value(last)
        if high < low:
            raise ValueError(f"range {first}-{last} goes backwards; write it low-high")
    return range(low, high + 1, step)


def _never_fires(fields: CronFields) -> bool:
    """True when the day-of-month field names no day that any chosen month has."""
    if fields.weekdays_restricted and fields.days_restricted:
        return False  # either day field may match: some weekday always comes
    longest = max(calendar.monthrange(2024, month)[1] for month in fields.months)
    return min(fields.days) > longest


# --- next firing time ----------------------------------------------------------------------


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _next_after(fields: CronFields, when: datetime) -> datetime:
    t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(100_000):
        if t.month not in fields.months:
            t = _next_month(t)
        elif not fields.day_matches(t):
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
        elif t.hour not in fields.hours:
            later = [h for h in fields.hours if h > t.hour]
            t = t.replace(hour=min(later), minute=0) if later else _next_day(t)
        elif t.minute not in fields.minutes:
            later = [m for m in fields.minutes if m > t.minute]
            t = t.replace(minute=min(later)) if later else _next_hour(t)
        else:
            return t
    raise ValueError("cron expression never fires")  # parse_schedule rules this out


def _next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _next_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0) + timedelta(days=1)


def _next_hour(t: datetime) -> datetime:
    return t.replace(minute=0) + timedelta(hours=1)
