"""`kiln` command: migrate, serve, worker, up (all in one), create-key."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .config import Settings, UnsafeConfiguration, load_settings

DEFAULT_ORGANIZATION = "org_default"


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every plugin it loads at INFO; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def cmd_migrate(settings: Settings, _args) -> None:
    from .store.migrate import migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    print("migrations applied")


def cmd_create_key(settings: Settings, args) -> None:
    print(asyncio.run(_create_key(settings, args.org, args.name)))


async def _create_key(settings: Settings, organization: str, name: str) -> str:
    from .store.migrate import migrate
    from .store.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    store = Store(settings.effective_database_url)
    try:
        async with store.transaction() as tx:
            await tx.ensure_organization(organization)
            return await tx.create_api_key(organization, name)
    finally:
        await store.close()


async def _serve(settings: Settings, *, with_workers: int, on_ready=None) -> None:
    from .app import build_server

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = build_server(settings)
    stop = asyncio.Event()
    _install_stop(stop)
    ready = asyncio.Event()
    serving = asyncio.create_task(server.serve(ready))
    worker_task = None
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait(
        {serving, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if serving.done():
        serving.result()
        return
    if with_workers:
        from worker.loop import Worker

        worker_settings = settings
        if settings.worker_concurrency < with_workers:
            from dataclasses import replace

            worker_settings = replace(settings, worker_concurrency=with_workers)
        worker_task = asyncio.create_task(Worker(worker_settings).run(stop))
    if on_ready:
        on_ready()
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if worker_task:
        await worker_task
    server.request_stop()
    await serving


def cmd_serve(settings: Settings, _args) -> None:
    asyncio.run(_serve(settings, with_workers=0))


def cmd_worker(settings: Settings, _args) -> None:
    from worker.loop import Worker

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        await Worker(settings).run(stop)

    asyncio.run(main())


def _sample_input(settings: Settings) -> Path | None:
    """A 4-second test clip in the first input root, so the first curl has something to read."""
    if not settings.input_roots or shutil.which("ffmpeg") is None:
        return None
    sample = Path(settings.input_roots[0]) / "sample.mp4"
    if not sample.exists():
        sample.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "4",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                str(sample),
            ],
            check=True,
        )
    return sample.resolve()


def cmd_up(settings: Settings, args) -> None:
    key_file = settings.data_dir / "dev_api_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if key_file.exists():
        key = key_file.read_text().strip()
    else:
        key = asyncio.run(_create_key(settings, DEFAULT_ORGANIZATION, "development"))
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    sample = _sample_input(settings)

    def announce() -> None:
        body = {
            "input_url": f"file://{sample}" if sample else "https://example.com/video.mp4",
            "outputs": [
                {
                    "type": "OUTPUT_TYPE_MP4",
                    "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "480p"}],
                }
            ],
        }
        base = settings.effective_public_url
        print(
            f"""
kiln is up.
  Connect/HTTP: {base}    gRPC: {settings.grpc_host}:{settings.grpc_port}
  API key (development, organization {DEFAULT_ORGANIZATION}): {key}

Create a job:
  curl -s {base}/kiln.v1.JobService/Create \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
    -d '{json.dumps(body)}'
Then get it (put the id from the answer in):
  curl -s {base}/kiln.v1.JobService/Get \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{"id": "JOB_ID"}}'
""",
            flush=True,
        )

    asyncio.run(_serve(settings, with_workers=args.workers, on_ready=announce))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kiln", description="kiln video transcoding service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    commands.add_parser("serve", help="run the API server (gRPC and HTTP listeners)").set_defaults(
        run=cmd_serve
    )
    commands.add_parser(
        "worker", help="run a worker that claims tasks from the server"
    ).set_defaults(run=cmd_worker)
    up = commands.add_parser("up", help="migrate, serve and run workers in one process")
    up.add_argument(
        "--workers", type=int, default=2, help="concurrent tasks of the embedded worker"
    )
    up.set_defaults(run=cmd_up)
    key = commands.add_parser("create-key", help="create an API key for an organization")
    key.add_argument("--org", default=DEFAULT_ORGANIZATION)
    key.add_argument("--name", default="")
    key.set_defaults(run=cmd_create_key)
    args = parser.parse_args(argv)
    settings = load_settings()
    _setup_logging(settings)
    try:
        args.run(settings, args)
    except UnsafeConfiguration as refused:
        print(f"kiln: refusing to start: {refused}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
