"""A small in-repo fake of google.pubsub.v1 that the real google-cloud-pubsub client talks to.

    with running_fake(seed=0) as fake:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake.host)
        ...  # PublisherClient / SubscriberClient as usual
        fake.published(topic), fake.outstanding(subscription), fake.backlog(subscription)

or as a process: `python -m tests.pubsub_fake --port 8085`.
"""

from tests.pubsub_fake.runner import running_fake, serve_until_signalled
from tests.pubsub_fake.service import FakeServer, PubSubService
from tests.pubsub_fake.state import FakeError, PublishedMessage, PubSubFake

__all__ = [
    "FakeError",
    "FakeServer",
    "PubSubFake",
    "PubSubService",
    "PublishedMessage",
    "running_fake",
    "serve_until_signalled",
]
