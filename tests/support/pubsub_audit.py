"""What went through Pub/Sub, told by the real client APIs (the emulator has no other window).

- `Audit`: a subscription of its own on each topic, made before anything is published
  there, receives every message published to it: what was published, and how often.
- `backlog`: a Pull that returns at once; nothing means nothing waits for delivery.
- `SubscriberCalls`: what a subscriber client received (message id, delivery attempt, ack id)
  and then acked or handed back (a zero ack deadline), read from the google-cloud-pubsub
  client's own debug log of its calls. A process started with CLIENT_LOG_ENV writes it as
  one JSON object a line to its stderr; `recording_subscriber_calls` collects it in this
  process. A delivery carries its delivery attempt (1 for the first) when the subscription
  has a dead-letter policy, as kiln's have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.pubsub_v1 import types
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber import SubscriberClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from common.pubsub import DRAIN_ORDER, PubSubSettings

# The logger of the subscriber's asyncio transport (what kiln's server and workers use).
SUBSCRIBER_LOGGER = "google.pubsub_v1.services.subscriber.transports.grpc_asyncio"
# Settings that make a process's subscriber client log its calls (to stderr, as JSON).
CLIENT_LOG_ENV = {"GOOGLE_SDK_PYTHON_LOGGING_SCOPE": SUBSCRIBER_LOGGER}
# Audit subscriptions keep a message leased this long: nothing comes back while a test runs.
_AUDIT_ACK_DEADLINE = 600
_RPC = re.compile(r"Subscriber/(\w+)")


def kiln_topics(settings: PubSubSettings) -> list[str]:
    """Every topic kiln publishes to under `settings`: one per priority, the dead letters."""
    return [*(settings.topic(priority) for priority in DRAIN_ORDER), settings.dead_letter_topic]


def _channel(host: str) -> grpc.Channel:
    return grpc.insecure_channel(host)


class Audit:
    """Audit subscriptions ("<topic id>-audit") on topics of one emulator; sync clients."""

    def __init__(self, host: str) -> None:
        credentials = AnonymousCredentials()
        self.publisher = PublisherClient(
            transport=PublisherGrpcTransport(channel=_channel(host), credentials=credentials)
        )
        self.subscriber = SubscriberClient(
            transport=SubscriberGrpcTransport(channel=_channel(host), credentials=credentials)
        )
        self._subscriptions: dict[str, str] = {}
        self._seen: dict[str, list[types.PubsubMessage]] = {}

    def close(self) -> None:
        self.publisher.transport.close()
        self.subscriber.transport.close()

    def watch(self, *topics: str) -> None:
        """Create each topic (unless it exists) and its audit subscription, before anything
        is published to it."""
        for topic in topics:
            with contextlib.suppress(api_exceptions.AlreadyExists):
                self.publisher.create_topic(name=topic)
            project, _, topic_id = topic.partition("/topics/")
            name = f"{project}/subscriptions/{topic_id}-audit"
            self.subscriber.create_subscription(
                request=types.Subscription(
                    name=name, topic=topic, ack_deadline_seconds=_AUDIT_ACK_DEADLINE
                )
            )
            self._subscriptions[topic] = name
            self._seen[topic] = []

    def messages(self, topic: str) -> list[types.PubsubMessage]:
        """Every message published to `topic` since watch() that has arrived so far, in the
        order they were received."""
        subscription = self._subscriptions[topic]
        while received := self._pull(subscription):
            self._seen[topic] += [m.message for m in received]
            self.subscriber.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in received]
            )
        return list(self._seen[topic])

    def wait_for(self, topic: str, count: int, timeout: float = 10) -> list[types.PubsubMessage]:
        """The messages of `topic` once at least `count` arrived (polled, bounded)."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(topic)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} messages on {topic} in {timeout}s")
            time.sleep(0.05)
        return found

    def topics(self, project: str) -> list[str]:
        return [topic.name for topic in self.publisher.list_topics(project=f"projects/{project}")]

    def backlog(self, subscription: str) -> int:
        """Messages waiting on `subscription` now, from a Pull that returns at once; any it
        got are handed back (a zero ack deadline)."""
        received = self._pull(subscription)
        if received:
            self.subscriber.modify_ack_deadline(
                subscription=subscription,
                ack_ids=[m.ack_id for m in received],
                ack_deadline_seconds=0,
            )
        return len(received)

    def _pull(self, subscription: str) -> list[types.ReceivedMessage]:
        response = self.subscriber.pull(
            subscription=subscription, max_messages=100, return_immediately=True, timeout=10
        )
        return list(response.received_messages)


@dataclass(frozen=True)
class Delivery:
    message_id: str
    attempt: int  # 0 on a subscription without a dead-letter policy
    ack_id: str


@dataclass
class SubscriberCalls:
    """A subscriber client's calls as its debug log tells them."""

    deliveries: list[Delivery] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)  # ack ids sent in Acknowledge calls
    handed_back: set[str] = field(default_factory=set)  # ack ids given a zero deadline
    sent: Counter[str] = field(default_factory=Counter)  # calls made, by method
    answered: Counter[str] = field(default_factory=Counter)  # calls answered OK, by method

    @classmethod
    def from_entries(cls, entries: Iterable[dict[str, Any]]) -> SubscriberCalls:
        calls = cls()
        for entry in entries:
            calls._add(entry)
        return calls

    @classmethod
    def from_logs(cls, *paths: Path) -> SubscriberCalls:
        """From processes' log files (kiln's own lines in between are passed over)."""
        return cls.from_entries(
            entry for path in paths for entry in _json_lines(path.read_text().splitlines())
        )

    def attempts(self, message_id: str) -> list[int]:
        """The delivery attempts the client received `message_id` with, in order."""
        return [d.attempt for d in self.deliveries if d.message_id == message_id]

    @property
    def pending_acks(self) -> int:
        """Acknowledge calls sent and not (yet) answered OK."""
        return self.sent["Acknowledge"] - self.answered["Acknowledge"]

    def unacked(self) -> list[Delivery]:
        """Deliveries whose ack id no Acknowledge call carried."""
        return [d for d in self.deliveries if d.ack_id not in self.acked]

    def acked_message_ids(self) -> set[str]:
        return {d.message_id for d in self.deliveries if d.ack_id in self.acked}

    def _add(self, entry: dict[str, Any]) -> None:
        if entry.get("name", SUBSCRIBER_LOGGER) != SUBSCRIBER_LOGGER:
            return
        method = _RPC.search(str(entry.get("rpcName", "")))
        if method is None:
            return
        rpc = method.group(1)
        if "request" in entry:
            self.sent[rpc] += 1
            request = json.loads(entry["request"]["payload"])
            if rpc == "Acknowledge":
                self.acked.update(request.get("ackIds", []))
            elif rpc == "ModifyAckDeadline" and not request.get("ackDeadlineSeconds"):
                self.handed_back.update(request.get("ackIds", []))
        elif "response" in entry:
            self.answered[rpc] += 1
            if rpc == "Pull":
                response = json.loads(entry["response"]["payload"])
                self.deliveries += [
                    Delivery(
                        received["message"]["messageId"],
                        int(received.get("deliveryAttempt", 0)),
                        received["ackId"],
                    )
                    for received in response.get("receivedMessages", [])
                ]


def without_client_calls(text: str) -> str:
    """A process's log without its Pub/Sub client's call lines (kiln's own lines)."""
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if f'"name": "{SUBSCRIBER_LOGGER}"' not in line]
    left_out = len(lines) - len(kept)
    note = f"({left_out} lines of the Pub/Sub client's call log left out)\n" if left_out else ""
    return "".join(kept) + note


def _json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        entry = {"name": record.name, "rpcName": getattr(record, "rpcName", "")}
        for part in ("request", "response"):
            if hasattr(record, part):
                entry[part] = getattr(record, part)
        self.entries.append(entry)


@contextmanager
def recording_subscriber_calls() -> Iterator[list[dict[str, Any]]]:
    """This process's subscriber clients log their calls into the yielded list (entries for
    SubscriberCalls.from_entries) while the block runs."""
    logger = logging.getLogger(SUBSCRIBER_LOGGER)
    recorder = _Recorder()
    level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    try:
        yield recorder.entries
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
