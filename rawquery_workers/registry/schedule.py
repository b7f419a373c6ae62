"""Sync schedules: `hourly`, `daily`, `weekly` or a five-field cron expression, all in UTC.

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
                                jan-dec  sun-sat

Each field is `*`, a number or name, a range `a-b`, any of those with a step (`*/15`,
`1-10/2`, `5/10` = 5 up to the maximum), or a comma list of them. As in Vixie cron, when
both day fields are restricted (neither starts with `*`) a day matches if either does.

cronsim parses and evaluates the expressions: it follows Debian's cron, these rules
included. This module keeps to the grammar above (cronsim's extensions, a seconds field,
`L`, `LW`, `#`, are refused) and turns cronsim's errors into messages that name the field.
`Schedule.next_after` and `Schedule.times_after` are the one source of firing times
(`beat.due_slot` reads them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from rawquery_workers.errors import SpecError

KEYWORDS = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0"}
_FORMS = (
    "hourly, daily, weekly or a five-field cron expression "
    "(minute hour day-of-month month day-of-week, UTC), e.g. '30 2 * * 1-5'"
)
# Each field's name and the values it takes, in the order of the expression.
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat (0 and 7 are Sunday)"),
)
_SYNTAX = "write *, a value, a range a-b, a step like */15 or a comma list of them"
_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)  # cronsim wants a start even to validate


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: `text` as stored and shown, `cron` its five-field form (UTC)."""

    text: str
    cron: str

    def times_after(self, when: datetime) -> Iterator[datetime]:
        """Firing times strictly after `when` (naive means UTC), as aware UTC, in order.

        Ends (rather than running forever) if nothing fires within 50 years."""
        return CronSim(self.cron, as_utc(when))

    def next_after(self, when: datetime) -> datetime:
        """The first firing time strictly after `when` (naive means UTC), as aware UTC."""
        try:
            return next(self.times_after(when))
        except StopIteration:
            raise ValueError(f"cron expression '{self.cron}' never fires") from None


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
    for index, part in enumerate(parts):
        probe = ["*"] * 5
        probe[index] = part
        if not _is_standard_cron(" ".join(probe)):
            name, values = _FIELDS[index]
            raise SpecError(
                f"--schedule: {name} field '{part}' in '{cleaned}' is not valid: "
                f"a {name} is {values}; {_SYNTAX}"
            )
    cron = cleaned.lower()
    if not _is_standard_cron(cron):  # every field is fine alone: the days never come
        raise SpecError(
            f"--schedule: '{cleaned}' never fires: no month in its month field has a day "
            "in its day-of-month field"
        )
    return Schedule(cron, cron)


def _is_standard_cron(cron: str) -> bool:
    """cronsim accepts `cron` and it uses none of cronsim's extensions (`L`, `LW`, `#`:
    they parse to markers and (weekday, nth) pairs instead of plain numbers)."""
    try:
        parsed = CronSim(cron, _PROBE_START)
    except (CronSimError, ValueError):  # ValueError: a number too long for int()
        return False
    return all(day > 0 for day in parsed.days) and all(
        isinstance(day, int) for day in parsed.weekdays
    )


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
