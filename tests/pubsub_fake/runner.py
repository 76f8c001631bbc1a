"""Run a PubSubFake: in a background thread for tests, or in the foreground for a process."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.pubsub_fake.service import DEFAULT_LONG_POLL_SECONDS, FakeServer
from tests.pubsub_fake.state import PubSubFake

START_TIMEOUT_SECONDS = 10.0


@contextmanager
def running_fake(
    seed: int | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    long_poll_seconds: float = DEFAULT_LONG_POLL_SECONDS,
) -> Iterator[PubSubFake]:
    """Serve a fresh fake from a thread with its own event loop; yield it once it listens.

    Point clients at it with PUBSUB_EMULATOR_HOST=fake.host. On exit the server stops
    (running calls are cancelled) and the thread ends.
    """
    fake = PubSubFake(seed)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stopping: list[asyncio.Event] = []
    failures: list[BaseException] = []

    async def serve() -> None:
        server = FakeServer(fake, long_poll_seconds)
        stop = asyncio.Event()
        try:
            await server.start(host, port)
        except BaseException as error:
            failures.append(error)
            ready.set()
            raise
        stopping.append(stop)
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop(None)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as error:
            if not failures:
                failures.append(error)
        finally:
            # Calls the server cancelled may still be unwinding: let them end before closing.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="pubsub-fake", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_SECONDS) or failures:
        raise RuntimeError("pubsub fake did not start") from (failures[0] if failures else None)
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(stopping[0].set)
        thread.join(START_TIMEOUT_SECONDS)
        if thread.is_alive():
            raise RuntimeError("pubsub fake did not stop")
        if failures:
            raise RuntimeError("pubsub fake failed") from failures[0]


async def serve_until_signalled(
    host: str,
    port: int,
    *,
    seed: int | None = None,
    long_poll_seconds: float = DEFAULT_LONG_POLL_SECONDS,
    grace_seconds: float = 1.0,
) -> None:
    """Serve until SIGTERM or SIGINT; print the ready line once listening."""
    server = FakeServer(PubSubFake(seed), long_poll_seconds)
    address = await server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"pubsub fake listening on {address}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop(grace_seconds)
