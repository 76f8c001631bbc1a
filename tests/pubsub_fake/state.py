"""The fake's broker: topics, subscriptions and leases in memory, plus the inspection API.

Every method takes one lock, so tests may inspect from any thread while the gRPC service
mutates on its event loop. Lease deadlines use the caller's monotonic clock (`now`); the
service passes its loop's time and drives expiry with `next_deadline` and `expire_due`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.pubsub_v1.types import pubsub

# Raw protobuf classes of google.pubsub.v1 (proto-plus builds them at run time, hence `Any`).
TopicPb: Any = pubsub.Topic.pb()
SubscriptionPb: Any = pubsub.Subscription.pb()
PubsubMessagePb: Any = pubsub.PubsubMessage.pb()
ReceivedMessagePb: Any = pubsub.ReceivedMessage.pb()

DEFAULT_ACK_DEADLINE_SECONDS = 10
MAX_ACK_DEADLINE_SECONDS = 600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
# What real Pub/Sub shows as the topic of a subscription whose topic was deleted.
DELETED_TOPIC = "_deleted-topic_"

_TOPIC_NAME = re.compile(r"^projects/[^/]+/topics/[^/]+$")
_SUBSCRIPTION_NAME = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")


class FakeError(Exception):
    """A request the fake refuses; the service turns it into a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(name: str) -> FakeError:
    return FakeError(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={name}).")


def invalid(message: str) -> FakeError:
    return FakeError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _check_name(pattern: re.Pattern[str], kind: str, name: str) -> None:
    if not pattern.match(name):
        raise invalid(f"Invalid {kind} name: {name!r}.")


def check_ack_deadline(seconds: int, what: str) -> int:
    """Real Pub/Sub wants 10..600 s; the fake takes 1..600 so tests can expire leases fast."""
    if not 1 <= seconds <= MAX_ACK_DEADLINE_SECONDS:
        raise invalid(f"Invalid {what}: {seconds} (allowed 1..{MAX_ACK_DEADLINE_SECONDS} s).")
    return seconds


@dataclass(frozen=True)
class PublishedMessage:
    """One message as a topic accepted it."""

    message_id: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    publish_time: float  # seconds since the epoch


@dataclass(eq=False)
class Stream:
    """One StreamingPull call: its lease length and how many of its deliveries are unacked."""

    subscription: str
    ack_deadline_seconds: int
    max_outstanding: int  # <= 0: no limit, as in the real API
    outstanding: int = 0

    def room(self, cap: int) -> int:
        if self.max_outstanding <= 0:
            return cap
        return max(0, min(cap, self.max_outstanding - self.outstanding))


@dataclass(eq=False)
class _Copy:
    """A message's state in one subscription; leased while `ack_id` is set."""

    message: Any  # PubsubMessage pb, shared by every subscription of the topic
    delivery_count: int = 0
    ack_id: str | None = None
    deadline: float = 0.0
    stream: Stream | None = None


@dataclass(eq=False)
class _Subscription:
    pb: Any
    ack_deadline_seconds: int
    dead_letter_topic: str | None
    max_delivery_attempts: int
    copies: dict[str, _Copy] = field(default_factory=dict)  # message id -> unacked copy
    available: list[str] = field(default_factory=list)  # message ids, not leased
    leases: dict[str, str] = field(default_factory=dict)  # ack id -> message id
    delivery_counts: dict[str, int] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    dead_lettered: list[PublishedMessage] = field(default_factory=list)
    max_outstanding: int = 0
    waiting_pulls: int = 0

    @property
    def name(self) -> str:
        return str(self.pb.name)


@dataclass(eq=False)
class _Topic:
    pb: Any
    subscriptions: list[str] = field(default_factory=list)


class PubSubFake:
    """In-memory Pub/Sub state. Tests read it through the inspection methods below.

    `host` is set ("127.0.0.1:PORT") once a server serves this fake. Asking about a
    subscription that does not exist raises FakeError (NOT_FOUND).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.host: str | None = None
        # Called with a subscription name whenever messages may have become available to it
        # (publish, nack, expiry, ack freeing stream room, deletion). Set by the service.
        self.on_change: Callable[[str], None] | None = None
        self._cond = threading.Condition(threading.RLock())
        self._random = random.Random(seed)
        self._topics: dict[str, _Topic] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._published: dict[str, list[PublishedMessage]] = {}
        self._message_ids = itertools.count(1)
        self._ack_ids = itertools.count(1)
        self._sequence = itertools.count()
        # (deadline, sequence, subscription, message id, ack id); stale entries are skipped.
        self._deadlines: list[tuple[float, int, str, str, str]] = []

    # ----------------------------------------------------------------- inspection (any thread)

    def topics(self) -> list[str]:
        with self._cond:
            return sorted(self._topics)

    def subscriptions(self) -> list[str]:
        with self._cond:
            return sorted(self._subscriptions)

    def published(self, topic: str) -> list[PublishedMessage]:
        """Every message the topic accepted, in publish order (dead-lettered ones included)."""
        with self._cond:
            return list(self._published.get(topic, []))

    def delivery_count(self, subscription: str, message_id: str) -> int:
        """How often the subscription handed the message out (0: never); kept after the ack."""
        with self._cond:
            return self._sub(subscription).delivery_counts.get(message_id, 0)

    def outstanding(self, subscription: str) -> int:
        """Messages leased and not yet acked, nacked or expired."""
        with self._cond:
            return len(self._sub(subscription).leases)

    def max_outstanding(self, subscription: str) -> int:
        """The most messages this subscription ever had leased at once."""
        with self._cond:
            return self._sub(subscription).max_outstanding

    def backlog(self, subscription: str) -> int:
        """Messages available for delivery (not leased, not acked)."""
        with self._cond:
            return len(self._sub(subscription).available)

    def acked(self, subscription: str) -> list[str]:
        """Message ids acknowledged on the subscription, in ack order."""
        with self._cond:
            return list(self._sub(subscription).acked)

    def dead_lettered(self, subscription: str) -> list[PublishedMessage]:
        """Messages the subscription gave up on and forwarded to its dead-letter topic."""
        with self._cond:
            return list(self._sub(subscription).dead_lettered)

    def waiting_pulls(self, subscription: str) -> int:
        """Pull calls currently long-polling on the subscription."""
        with self._cond:
            return self._sub(subscription).waiting_pulls

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block (not on the fake's own loop) until `predicate()` holds after some change."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # ------------------------------------------------------------ admin (called by the service)

    def create_topic(self, topic: Any) -> Any:
        _check_name(_TOPIC_NAME, "topic", topic.name)
        with self._cond:
            if topic.name in self._topics:
                raise FakeError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Resource already exists in the project (resource={topic.name}).",
                )
            stored = TopicPb()
            stored.CopyFrom(topic)
            self._topics[topic.name] = _Topic(stored)
            self._published.setdefault(topic.name, [])
            self._cond.notify_all()
            return stored

    def get_topic(self, name: str) -> Any:
        with self._cond:
            return self._topic(name).pb

    def delete_topic(self, name: str) -> None:
        with self._cond:
            topic = self._topic(name)
            del self._topics[name]
            for sub_name in topic.subscriptions:
                self._subscriptions[sub_name].pb.topic = DELETED_TOPIC
            self._cond.notify_all()

    def create_subscription(self, subscription: Any) -> Any:
        _check_name(_SUBSCRIPTION_NAME, "subscription", subscription.name)
        _check_name(_TOPIC_NAME, "topic", subscription.topic)
        stored = SubscriptionPb()
        stored.CopyFrom(subscription)
        stored.ack_deadline_seconds = check_ack_deadline(
            subscription.ack_deadline_seconds or DEFAULT_ACK_DEADLINE_SECONDS,
            "ack_deadline_seconds",
        )
        dead_letter_topic = None
        attempts = 0
        policy = stored.dead_letter_policy
        if stored.HasField("dead_letter_policy") and policy.dead_letter_topic:
            _check_name(_TOPIC_NAME, "dead_letter_topic", policy.dead_letter_topic)
            if policy.max_delivery_attempts < 0:
                raise invalid(f"Invalid max_delivery_attempts: {policy.max_delivery_attempts}.")
            # Real Pub/Sub requires 5..100; the fake allows any positive count.
            attempts = policy.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS
            policy.max_delivery_attempts = attempts
            dead_letter_topic = policy.dead_letter_topic
        with self._cond:
            if subscription.name in self._subscriptions:
                raise FakeError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Resource already exists in the project (resource={subscription.name}).",
                )
            topic = self._topic(subscription.topic)
            self._subscriptions[subscription.name] = _Subscription(
                stored, stored.ack_deadline_seconds, dead_letter_topic, attempts
            )
            topic.subscriptions.append(subscription.name)
            self._cond.notify_all()
            return stored

    def get_subscription(self, name: str) -> Any:
        with self._cond:
            return self._sub(name).pb

    def delete_subscription(self, name: str) -> None:
        with self._cond:
            sub = self._sub(name)
            del self._subscriptions[name]
            topic = self._topics.get(sub.pb.topic)
            if topic is not None:
                topic.subscriptions.remove(name)
            self._changed(name)

    # -------------------------------------------------------- messages (called by the service)

    def publish(self, topic_name: str, messages: Iterable[Any]) -> list[str]:
        batch = list(messages)
        if not batch:
            raise invalid("The request contains no messages.")
        if any(not m.data and not m.attributes for m in batch):
            raise invalid(
                "Some messages in the publish request are empty. "
                "Every message must have either data or attributes."
            )
        with self._cond:
            topic = self._topic(topic_name)
            return [self._append(topic, m.data, dict(m.attributes), m.ordering_key) for m in batch]

    def pull_waiting(self, subscription: str, delta: int) -> None:
        with self._cond:
            sub = self._subscriptions.get(subscription)
            if sub is not None:
                sub.waiting_pulls += delta
                self._cond.notify_all()

    def lease(
        self,
        subscription: str,
        max_messages: int,
        now: float,
        stream: Stream | None = None,
    ) -> list[Any]:
        """Hand out up to `max_messages` available messages in random order, each leased to a
        fresh ack id until `now` + the subscription's (or the stream's) ack deadline."""
        with self._cond:
            sub = self._sub(subscription)
            count = min(max_messages, len(sub.available))
            seconds = sub.ack_deadline_seconds
            if stream is not None:
                count = stream.room(count)
                seconds = stream.ack_deadline_seconds
            received = [self._lease_one(sub, now + seconds, stream) for _ in range(count)]
            if received:
                sub.max_outstanding = max(sub.max_outstanding, len(sub.leases))
                self._cond.notify_all()
            return received

    def acknowledge(self, subscription: str, ack_ids: Iterable[str]) -> None:
        """Acks of unknown or stale ack ids (an earlier delivery) are ignored."""
        with self._cond:
            sub = self._sub(subscription)
            freed_stream_room = False
            for ack_id in ack_ids:
                message_id = sub.leases.pop(ack_id, None)
                if message_id is None:
                    continue
                copy = sub.copies.pop(message_id)
                freed_stream_room |= copy.stream is not None
                self._end_lease(copy)
                sub.acked.append(message_id)
            if freed_stream_room:
                self._changed(subscription)
            self._cond.notify_all()

    def modify_ack_deadline(
        self, subscription: str, ack_ids: Iterable[str], seconds: int, now: float
    ) -> None:
        """Extend leases to `now + seconds`; 0 is a nack. Stale ack ids are ignored."""
        if not 0 <= seconds <= MAX_ACK_DEADLINE_SECONDS:
            raise invalid(
                f"Invalid ack deadline: {seconds} (allowed 0..{MAX_ACK_DEADLINE_SECONDS} s)."
            )
        with self._cond:
            sub = self._sub(subscription)
            for ack_id in ack_ids:
                message_id = sub.leases.get(ack_id)
                if message_id is None:
                    continue
                copy = sub.copies[message_id]
                if seconds == 0:
                    self._release(sub, ack_id, copy)
                else:
                    copy.deadline = now + seconds
                    self._push_deadline(sub, message_id, copy)
            self._cond.notify_all()

    def open_stream(
        self, subscription: str, ack_deadline_seconds: int, max_outstanding: int
    ) -> Stream:
        with self._cond:
            sub = self._sub(subscription)
            seconds = ack_deadline_seconds or sub.ack_deadline_seconds
            check_ack_deadline(seconds, "stream_ack_deadline_seconds")
            return Stream(subscription, seconds, max_outstanding)

    def next_deadline(self) -> float | None:
        """The earliest live lease deadline, or None."""
        with self._cond:
            while self._deadlines and not self._live(self._deadlines[0]):
                heapq.heappop(self._deadlines)
            return self._deadlines[0][0] if self._deadlines else None

    def expire_due(self, now: float) -> None:
        """Leases whose deadline has passed end: the message is available again, or
        dead-lettered once it has used up its delivery attempts."""
        with self._cond:
            expired = False
            while self._deadlines and self._deadlines[0][0] <= now:
                entry = heapq.heappop(self._deadlines)
                if not self._live(entry):
                    continue
                _, _, sub_name, message_id, ack_id = entry
                sub = self._subscriptions[sub_name]
                self._release(sub, ack_id, sub.copies[message_id])
                expired = True
            if expired:
                self._cond.notify_all()

    # ------------------------------------------------------------------------------ internals

    def _sub(self, name: str) -> _Subscription:
        sub = self._subscriptions.get(name)
        if sub is None:
            raise not_found(name)
        return sub

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise not_found(name)
        return topic

    def _changed(self, subscription: str) -> None:
        self._cond.notify_all()
        if self.on_change is not None:
            self.on_change(subscription)

    def _append(
        self, topic: _Topic, data: bytes, attributes: dict[str, str], ordering_key: str
    ) -> str:
        message_id = str(next(self._message_ids))
        published_ns = time.time_ns()
        message = PubsubMessagePb(
            data=data, attributes=attributes, message_id=message_id, ordering_key=ordering_key
        )
        message.publish_time.FromNanoseconds(published_ns)
        record = PublishedMessage(message_id, data, attributes, ordering_key, published_ns / 1e9)
        self._published[topic.pb.name].append(record)
        for sub_name in topic.subscriptions:
            sub = self._subscriptions[sub_name]
            sub.copies[message_id] = _Copy(message)
            sub.available.append(message_id)
            self._changed(sub_name)
        self._cond.notify_all()
        return message_id

    def _lease_one(self, sub: _Subscription, deadline: float, stream: Stream | None) -> Any:
        # Swap a random available message to the end and pop it: no order guarantee, O(1).
        available = sub.available
        index = self._random.randrange(len(available))
        available[index], available[-1] = available[-1], available[index]
        message_id = available.pop()
        copy = sub.copies[message_id]
        copy.delivery_count += 1
        sub.delivery_counts[message_id] = copy.delivery_count
        ack_id = f"{sub.pb.name.rsplit('/', 1)[1]}:{message_id}:{next(self._ack_ids)}"
        copy.ack_id = ack_id
        copy.deadline = deadline
        copy.stream = stream
        if stream is not None:
            stream.outstanding += 1
        sub.leases[ack_id] = message_id
        self._push_deadline(sub, message_id, copy)
        received = ReceivedMessagePb(ack_id=ack_id)
        received.message.CopyFrom(copy.message)
        if sub.dead_letter_topic is not None:
            received.delivery_attempt = copy.delivery_count
        return received

    def _push_deadline(self, sub: _Subscription, message_id: str, copy: _Copy) -> None:
        assert copy.ack_id is not None
        entry = (copy.deadline, next(self._sequence), sub.name, message_id, copy.ack_id)
        heapq.heappush(self._deadlines, entry)

    def _live(self, entry: tuple[float, int, str, str, str]) -> bool:
        deadline, _, sub_name, message_id, ack_id = entry
        sub = self._subscriptions.get(sub_name)
        copy = sub.copies.get(message_id) if sub is not None else None
        return copy is not None and copy.ack_id == ack_id and copy.deadline == deadline

    def _end_lease(self, copy: _Copy) -> None:
        if copy.stream is not None:
            copy.stream.outstanding -= 1
        copy.stream = None
        copy.ack_id = None

    def _release(self, sub: _Subscription, ack_id: str, copy: _Copy) -> None:
        """A lease ends without an ack (nack or expiry)."""
        del sub.leases[ack_id]
        self._end_lease(copy)
        message = copy.message
        if sub.dead_letter_topic is not None and copy.delivery_count >= sub.max_delivery_attempts:
            del sub.copies[message.message_id]
            attributes = dict(message.attributes)
            sub.dead_lettered.append(
                PublishedMessage(
                    message.message_id,
                    message.data,
                    attributes,
                    message.ordering_key,
                    message.publish_time.ToNanoseconds() / 1e9,
                )
            )
            target = self._topics.get(sub.dead_letter_topic)
            if target is not None:  # a missing dead-letter topic drops the message
                self._append(target, message.data, attributes, message.ordering_key)
        else:
            sub.available.append(message.message_id)
        self._changed(sub.name)
