"""Pub/Sub as kiln uses it: names, clients, the topology, and the task message.

Shared by the server (creates the topology, publishes ready tasks, reads the dead-letter
subscription) and by workers (pull, extend, ack). Pub/Sub has no priorities, so there is
one topic and one subscription per priority; workers drain PREMIUM first.

A message carries only ids (the server is the one owner of state): a worker claims the
task id over the WorkerService, and a duplicate or stale delivery finds nothing to claim.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.settings_env import BadSetting, env_int

# Google's Pub/Sub client is imported where it is used, not here: every server and worker
# reads PubSubSettings, and most of them dispatch through the database queue; the client's
# imports cost a fifth of a server's start (measured: 0.3 s of CPU of 1.5 s).
if TYPE_CHECKING:
    from google.pubsub_v1 import types
    from google.pubsub_v1.services.publisher import PublisherAsyncClient
    from google.pubsub_v1.services.subscriber import SubscriberAsyncClient

# kiln.v1.Priority numbers, most urgent first: the order workers drain subscriptions in.
PRIORITY_NAMES: dict[int, str] = {3: "premium", 2: "standard", 1: "economy"}
DRAIN_ORDER: tuple[int, ...] = (3, 2, 1)
# Pub/Sub's own bound for an ack deadline (seconds).
MAX_ACK_DEADLINE = 600


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PubSubSettings:
    """KILN_PUBSUB_* settings, read by servers and workers alike."""

    project: str = "kiln-local"
    # Topics and subscriptions are "<prefix>-premium|standard|economy" and "<prefix>-dead-letter".
    prefix: str = "kiln-tasks"
    # Deliveries of one message before it goes to the dead-letter topic (Pub/Sub: 5-100).
    max_deliveries: int = 5
    # The subscriptions' ack deadline; workers extend it while a task runs. Short, because
    # it is also how long a message stays hidden when its receiver vanished (a dead worker,
    # or a stopped worker's Pull answered as it went).
    ack_deadline_seconds: int = 20
    # Create missing topics and subscriptions at start (off when an operator owns them).
    create_topology: bool = True
    # PUBSUB_EMULATOR_HOST: an emulator (or the test fake) instead of Google's endpoint.
    emulator_host: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PubSubSettings:
        env = os.environ if env is None else env
        return cls(
            project=env.get("KILN_PUBSUB_PROJECT", "")
            or env.get("GOOGLE_CLOUD_PROJECT", "")
            or "kiln-local",
            prefix=env.get("KILN_PUBSUB_PREFIX", "kiln-tasks"),
            max_deliveries=_max_deliveries(env),
            ack_deadline_seconds=env_int(env, "KILN_PUBSUB_ACK_DEADLINE_SECONDS", 20, minimum=1),
            create_topology=_flag(env.get("KILN_PUBSUB_CREATE_TOPOLOGY", "true")),
            emulator_host=env.get("PUBSUB_EMULATOR_HOST", ""),
        )

    def topic(self, priority: int) -> str:
        return f"projects/{self.project}/topics/{self.prefix}-{_priority_name(priority)}"

    def subscription(self, priority: int) -> str:
        return f"projects/{self.project}/subscriptions/{self.prefix}-{_priority_name(priority)}"

    @property
    def dead_letter_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.prefix}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.prefix}-dead-letter"


def _priority_name(priority: int) -> str:
    # An unset priority is STANDARD, as at Create.
    return PRIORITY_NAMES.get(priority, "standard")


def _emulator_transport(settings: PubSubSettings, transport: type) -> dict:
    """Client arguments: Google's endpoint with the environment's credentials, or an
    emulator over a plain channel with anonymous ones (PUBSUB_EMULATOR_HOST)."""
    if not settings.emulator_host:
        return {}
    import grpc
    from google.auth.credentials import AnonymousCredentials

    channel = grpc.aio.insecure_channel(settings.emulator_host)
    return {"transport": transport(channel=channel, credentials=AnonymousCredentials())}


def publisher_client(settings: PubSubSettings) -> PublisherAsyncClient:
    from google.pubsub_v1.services.publisher import PublisherAsyncClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport

    return PublisherAsyncClient(**_emulator_transport(settings, PublisherGrpcAsyncIOTransport))


def subscriber_client(settings: PubSubSettings) -> SubscriberAsyncClient:
    from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

    return SubscriberAsyncClient(**_emulator_transport(settings, SubscriberGrpcAsyncIOTransport))


async def ensure_topology(
    settings: PubSubSettings,
    publisher: PublisherAsyncClient,
    subscriber: SubscriberAsyncClient,
) -> None:
    """Creates what is missing: a topic and a subscription per priority, and the dead
    letters. Existing ones are left as they are (an operator may have tuned them)."""
    from google.api_core import exceptions as api_exceptions
    from google.pubsub_v1 import types

    topics = [settings.topic(priority) for priority in DRAIN_ORDER]
    for topic in [*topics, settings.dead_letter_topic]:
        with contextlib.suppress(api_exceptions.AlreadyExists):
            await publisher.create_topic(name=topic)
    # Pub/Sub accepts 10-600 s; shorter deadlines are for emulators and tests.
    deadline = min(settings.ack_deadline_seconds, MAX_ACK_DEADLINE)
    for priority in DRAIN_ORDER:
        with contextlib.suppress(api_exceptions.AlreadyExists):
            await subscriber.create_subscription(
                request=types.Subscription(
                    name=settings.subscription(priority),
                    topic=settings.topic(priority),
                    ack_deadline_seconds=deadline,
                    dead_letter_policy=types.DeadLetterPolicy(
                        dead_letter_topic=settings.dead_letter_topic,
                        max_delivery_attempts=settings.max_deliveries,
                    ),
                )
            )
    with contextlib.suppress(api_exceptions.AlreadyExists):
        await subscriber.create_subscription(
            request=types.Subscription(
                name=settings.dead_letter_subscription,
                topic=settings.dead_letter_topic,
                ack_deadline_seconds=deadline,
            )
        )


@dataclass(frozen=True)
class TaskMessage:
    """One ready task: ids in the body, priority and trace context as attributes."""

    task_id: str
    job_id: str
    priority: int
    # W3C trace context of the request that made the task ready ("" when not traced).
    traceparent: str = ""

    def encode(self) -> types.PubsubMessage:
        from google.pubsub_v1 import types

        attributes = {"priority": _priority_name(self.priority)}
        if self.traceparent:
            attributes["traceparent"] = self.traceparent
        body = json.dumps({"task_id": self.task_id, "job_id": self.job_id}).encode()
        return types.PubsubMessage(data=body, attributes=attributes)

    @classmethod
    def decode(cls, message: types.PubsubMessage) -> TaskMessage:
        """Raises ValueError for anything that is not a kiln task message."""
        try:
            body = json.loads(bytes(message.data))
            task_id, job_id = body["task_id"], body["job_id"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a kiln task message: {error}") from None
        if not isinstance(task_id, str) or not task_id.startswith("tsk_"):
            raise ValueError("not a kiln task message: bad task_id")
        if not isinstance(job_id, str):
            raise ValueError("not a kiln task message: bad job_id")
        names = {name: number for number, name in PRIORITY_NAMES.items()}
        return cls(
            task_id=task_id,
            job_id=job_id,
            priority=names.get(message.attributes.get("priority", ""), 2),
            traceparent=message.attributes.get("traceparent", ""),
        )


def _max_deliveries(env: Mapping[str, str]) -> int:
    """Pub/Sub takes a dead-letter policy of 5 to 100 deliveries; anything else would stop
    the server with the service's OutOfRange at start, so it is refused here, by name."""
    value = env_int(env, "KILN_PUBSUB_MAX_DELIVERIES", 5, minimum=5)
    if value > 100:
        raise BadSetting(f"KILN_PUBSUB_MAX_DELIVERIES must be at most 100, got {value}")
    return value
