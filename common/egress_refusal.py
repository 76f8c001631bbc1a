"""What the egress proxy records when it refuses a request."""

from __future__ import annotations

from dataclasses import dataclass

# Data URIs can be long; a refusal message quotes the start.
MAX_QUOTED_URL = 200


@dataclass(frozen=True)
class Refusal:
    """One refused request, in words a job error can carry.

    `context` says how the URL was reached ("request for", "redirect to", "playlist … names");
    `address` is the refused address when the refusal is about one.
    """

    url: str
    reason: str
    address: str = ""
    context: str = "request for"

    def describe(self) -> str:
        url = self.url if len(self.url) <= MAX_QUOTED_URL else self.url[:MAX_QUOTED_URL] + "…"
        joiner = ", which " if self.context.startswith("playlist") else " "
        return f"{self.context} {url}{joiner}{self.reason}".strip()


class Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal
