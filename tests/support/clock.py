"""A clock a test sets, for code that reads the time through an injected `clock`."""

from __future__ import annotations

from datetime import datetime


class ManualClock:
    """Reads the moment the test last set it to, never the wall clock, so a test states
    when something happens instead of sleeping until it does."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = moment
