"""Times as the API writes them: UTC, ISO 8601 to the second, with a Z."""

from datetime import datetime, timezone


def as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; they are UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def iso_time(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
