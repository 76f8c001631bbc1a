"""Task messages and Pub/Sub names: what the server publishes, and what a worker refuses."""

from __future__ import annotations

import pytest
from google.pubsub_v1 import types

from common.pubsub import DRAIN_ORDER, PubSubSettings, TaskMessage

TASK = "tsk_01m8452sjd75db3k43snbeq1sp"


def test_a_message_round_trips_with_priority_and_trace_context():
    message = TaskMessage(TASK, "job_1", 3, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    encoded = message.encode()
    assert encoded.attributes["priority"] == "premium"
    assert TaskMessage.decode(encoded) == message


def test_an_unset_priority_goes_out_as_standard():
    assert TaskMessage(TASK, "job_1", 0).encode().attributes["priority"] == "standard"
    assert PubSubSettings().topic(0) == PubSubSettings().topic(2)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"job_id": "job_1"}',
        b'{"task_id": 7, "job_id": "job_1"}',
        b'{"task_id": "job_1", "job_id": "job_1"}',
        b'{"task_id": "' + TASK.encode() + b'", "job_id": 5}',
    ],
)
def test_anything_but_a_kiln_task_message_is_refused(data):
    with pytest.raises(ValueError, match="not a kiln task message"):
        TaskMessage.decode(types.PubsubMessage(data=data))


def test_names_per_priority_and_drain_order():
    settings = PubSubSettings.from_env(
        {"KILN_PUBSUB_PROJECT": "p", "KILN_PUBSUB_PREFIX": "k", "KILN_PUBSUB_MAX_DELIVERIES": "7"}
    )
    assert [settings.subscription(p) for p in DRAIN_ORDER] == [
        "projects/p/subscriptions/k-premium",
        "projects/p/subscriptions/k-standard",
        "projects/p/subscriptions/k-economy",
    ]
    assert settings.dead_letter_topic == "projects/p/topics/k-dead-letter"
    assert settings.max_deliveries == 7
    assert settings.create_topology
    assert not PubSubSettings.from_env({"KILN_PUBSUB_CREATE_TOPOLOGY": "false"}).create_topology
