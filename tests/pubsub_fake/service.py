"""google.pubsub.v1 Publisher and Subscriber over grpc.aio, backed by a PubSubFake.

Pulls wait on a per-subscription asyncio.Event that the fake sets on publish, nack, expiry
and stream room; lease expiry runs from one loop timer set to the earliest lease deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import pubsub

from tests.pubsub_fake.state import FakeError, PubSubFake, check_ack_deadline, invalid

DEFAULT_LONG_POLL_SECONDS = 10.0
# A long-polling Pull answers (empty) this long before the client's gRPC deadline.
DEADLINE_MARGIN_SECONDS = 0.1
# Most messages one StreamingPull response carries.
STREAM_BATCH = 1000

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _unary(method: Handler, request_type: Any) -> grpc.RpcMethodHandler:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(request, context)
        except FakeError as error:
            await context.abort(error.code, error.message)

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.pb().FromString,
        response_serializer=_serialize,
    )


class PubSubService:
    """The RPC handlers; one per server, on that server's event loop."""

    def __init__(
        self, fake: PubSubFake, long_poll_seconds: float = DEFAULT_LONG_POLL_SECONDS
    ) -> None:
        self._fake = fake
        self._long_poll_seconds = long_poll_seconds
        self._events: dict[str, asyncio.Event] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fake.on_change = self._wake

    def detach(self) -> None:
        self._fake.on_change = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        publisher = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "CreateTopic": _unary(self._create_topic, pubsub.Topic),
                "GetTopic": _unary(self._get_topic, pubsub.GetTopicRequest),
                "Publish": _unary(self._publish, pubsub.PublishRequest),
                "DeleteTopic": _unary(self._delete_topic, pubsub.DeleteTopicRequest),
            },
        )
        subscriber = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Subscriber",
            {
                "CreateSubscription": _unary(self._create_subscription, pubsub.Subscription),
                "GetSubscription": _unary(self._get_subscription, pubsub.GetSubscriptionRequest),
                "DeleteSubscription": _unary(
                    self._delete_subscription, pubsub.DeleteSubscriptionRequest
                ),
                "Pull": _unary(self._pull, pubsub.PullRequest),
                "Acknowledge": _unary(self._acknowledge, pubsub.AcknowledgeRequest),
                "ModifyAckDeadline": _unary(
                    self._modify_ack_deadline, pubsub.ModifyAckDeadlineRequest
                ),
                "StreamingPull": grpc.stream_stream_rpc_method_handler(
                    self._streaming_pull,
                    request_deserializer=pubsub.StreamingPullRequest.pb().FromString,
                    response_serializer=_serialize,
                ),
            },
        )
        return [publisher, subscriber]

    # ------------------------------------------------------------------------ wake-ups, expiry

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _event(self, subscription: str) -> asyncio.Event:
        """The event the next change to `subscription` sets; take it before checking state."""
        event = self._events.get(subscription)
        if event is None:
            event = self._events[subscription] = asyncio.Event()
        return event

    def _wake(self, subscription: str) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            loop.call_soon_threadsafe(self._wake, subscription)
            return
        event = self._events.pop(subscription, None)
        if event is not None:
            event.set()

    def _schedule_expiry(self) -> None:
        """Keep one timer armed for the earliest live lease deadline."""
        assert self._loop is not None
        when = self._fake.next_deadline()
        timer = self._timer
        if timer is not None:
            if when is not None and timer.when() <= when:
                return
            timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._fake.expire_due(self._now())
        self._schedule_expiry()

    # ------------------------------------------------------------------------------ publisher

    async def _create_topic(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._fake.create_topic(request)

    async def _get_topic(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._fake.get_topic(request.topic)

    async def _publish(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ids = self._fake.publish(request.topic, request.messages)
        return pubsub.PublishResponse.pb()(message_ids=ids)

    async def _delete_topic(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._fake.delete_topic(request.topic)
        return empty_pb2.Empty()

    # ----------------------------------------------------------------------------- subscriber

    async def _create_subscription(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._fake.create_subscription(request)

    async def _get_subscription(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._fake.get_subscription(request.subscription)

    async def _delete_subscription(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._fake.delete_subscription(request.subscription)
        return empty_pb2.Empty()

    async def _acknowledge(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._fake.acknowledge(request.subscription, request.ack_ids)
        return empty_pb2.Empty()

    async def _modify_ack_deadline(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._fake.modify_ack_deadline(
            request.subscription, request.ack_ids, request.ack_deadline_seconds, self._now()
        )
        self._schedule_expiry()
        return empty_pb2.Empty()

    async def _pull(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        name = request.subscription
        if request.max_messages <= 0:
            raise invalid("max_messages must be positive.")
        give_up = self._now() + self._long_poll_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            give_up = min(give_up, self._now() + remaining - DEADLINE_MARGIN_SECONDS)
        while True:
            now = self._now()
            self._fake.expire_due(now)
            self._schedule_expiry()
            event = self._event(name)
            if self._fake.backlog(name) or request.return_immediately or now >= give_up:
                break
            # A cancelled call ends here (CancelledError) before anything was leased.
            self._fake.pull_waiting(name, 1)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), give_up - now)
            finally:
                self._fake.pull_waiting(name, -1)
        received = self._fake.lease(name, request.max_messages, self._now())
        self._schedule_expiry()
        return pubsub.PullResponse.pb()(received_messages=received)

    async def _streaming_pull(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            first = await anext(aiter(requests))
        except StopAsyncIteration:
            return
        name = first.subscription
        failure: list[FakeError] = []
        try:
            if not name:
                raise invalid("The first StreamingPullRequest must name a subscription.")
            stream = self._fake.open_stream(
                name, first.stream_ack_deadline_seconds, first.max_outstanding_messages
            )
            self._apply_stream_request(stream.subscription, stream, first)
        except FakeError as error:
            await context.abort(error.code, error.message)
        reader_done = asyncio.Event()

        async def read() -> None:
            try:
                async for request in requests:  # empty ones are the client's keep-alives
                    self._apply_stream_request(name, stream, request)
            except FakeError as error:
                failure.append(error)
            finally:
                reader_done.set()
                self._wake(name)

        reader = asyncio.create_task(read())
        try:
            while not reader_done.is_set():
                now = self._now()
                self._fake.expire_due(now)
                event = self._event(name)
                try:
                    batch = self._fake.lease(name, STREAM_BATCH, now, stream)
                except FakeError as error:  # the subscription was deleted
                    failure.append(error)
                    break
                self._schedule_expiry()
                if batch:
                    yield pubsub.StreamingPullResponse.pb()(received_messages=batch)
                else:
                    await event.wait()
        finally:
            reader.cancel()
        if failure:
            await context.abort(failure[0].code, failure[0].message)

    def _apply_stream_request(self, name: str, stream: Any, request: Any) -> None:
        if request.stream_ack_deadline_seconds:
            stream.ack_deadline_seconds = check_ack_deadline(
                request.stream_ack_deadline_seconds, "stream_ack_deadline_seconds"
            )
        if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
            raise invalid("modify_deadline_ack_ids and modify_deadline_seconds differ in length.")
        if request.ack_ids:
            self._fake.acknowledge(name, request.ack_ids)
        if request.modify_deadline_ack_ids:
            now = self._now()
            for ack_id, seconds in zip(
                request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=True
            ):
                self._fake.modify_ack_deadline(name, [ack_id], seconds, now)
            self._schedule_expiry()


class FakeServer:
    """A grpc.aio server serving a PubSubFake; start and stop it on one event loop."""

    def __init__(
        self, fake: PubSubFake, long_poll_seconds: float = DEFAULT_LONG_POLL_SECONDS
    ) -> None:
        self.fake = fake
        self._service = PubSubService(fake, long_poll_seconds)
        self._server: grpc.aio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and return "HOST:PORT" (also set as `fake.host`)."""
        self._service.attach(asyncio.get_running_loop())
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(self._service.handlers())
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"pubsub fake: cannot listen on {host}:{port}")
        await server.start()
        self._server = server
        self.fake.host = f"{host}:{bound}"
        return self.fake.host

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening; calls still running are cancelled after `grace` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        self._service.detach()
