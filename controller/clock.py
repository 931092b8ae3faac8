"""The daemon's notion of now: the wall clock, or an accelerated one for the demo and tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall-clock time in UTC."""

    speed: float = 1.0

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        return datetime.now(UTC)

    def real_seconds(self, farm_seconds: float) -> float:
        """How many real seconds pass while `farm_seconds` pass on this clock."""
        return farm_seconds / self.speed


class AcceleratedClock(Clock):
    """Farm time that runs `speed` times faster than real time from `start`.

    With speed 1440 a farm day passes in one real minute: the demo and the end-to-end tests
    see a whole day of prices, plans and sales without waiting for it.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        """Farm time: start plus accelerated elapsed real time."""
        elapsed = time.monotonic() - self._real_start
        return self.start + timedelta(seconds=elapsed * self.speed)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour containing `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def as_utc(moment: datetime) -> datetime:
    """`moment` with a time zone: a naive one is taken as UTC (SQLite hands back naive
    datetimes for timezone-aware columns, which were stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
