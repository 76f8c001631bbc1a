"""`python -m tests.pubsub_fake --port 8085`: serve a Pub/Sub fake until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio

from tests.pubsub_fake.runner import serve_until_signalled
from tests.pubsub_fake.service import DEFAULT_LONG_POLL_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.pubsub_fake",
        description="In-memory google.pubsub.v1 fake for PUBSUB_EMULATOR_HOST clients.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=None, help="seed of the delivery order")
    parser.add_argument(
        "--long-poll-seconds",
        type=float,
        default=DEFAULT_LONG_POLL_SECONDS,
        help="how long an empty Pull waits for messages",
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve_until_signalled(
            args.host, args.port, seed=args.seed, long_poll_seconds=args.long_poll_seconds
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
