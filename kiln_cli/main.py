"""`kiln` command: the server side (migrate, serve, worker, up, create-key, keys) and the
client side (jobs, presets) on typer + rich.

The one composition root: the server commands read the server's settings, `kiln worker`
reads only the worker's (no database settings), and `kiln up` reads both from the same
environment and points its embedded worker at its own WorkerService listener. The client
commands speak Connect JSON over HTTP to KILN_URL (see kiln_cli/client.py).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import jobs, keys, origins, presets, secrets, webhooks, workers
from .common import EXIT_CODES_HELP
from .keys import DEFAULT_ORGANIZATION, create_api_key
from .server_side import read_server_settings, read_worker_settings, refusing

if TYPE_CHECKING:
    # Imported where used: the client commands (jobs, presets) never load the server's
    # settings, whose Pub/Sub backend alone costs a third of a second per invocation.
    from server.config import Settings
    from worker.settings import WorkerSettings

app = typer.Typer(
    name="kiln",
    help=(
        "kiln video transcoding service. Client commands (jobs, presets) take the server "
        "from --url or KILN_URL (HTTP base URL, e.g. http://127.0.0.1:8080) and the key "
        f"from --api-key or KILN_API_KEY. {EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(jobs.app, name="jobs")
app.add_typer(presets.app, name="presets")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(origins.app, name="origins")
app.add_typer(secrets.app, name="secrets")
app.add_typer(workers.app, name="workers")
app.add_typer(keys.app, name="keys")


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def worker_listener_address(settings: Settings) -> str:
    """Where a worker in this process reaches the server's WorkerService listener (a
    wildcard listener is reached on loopback)."""
    host = settings.worker_host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.worker_port}"


def embedded_worker_settings(
    settings: Settings, worker_settings: WorkerSettings, workers: int
) -> WorkerSettings:
    """The worker of `kiln up`: this server's listener, and at least `workers` slots."""
    return replace(
        worker_settings,
        server_address=worker_listener_address(settings),
        concurrency=max(worker_settings.concurrency, workers),
    )


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    refusing(_migrate)


def _migrate() -> None:
    from server.store.migrate import migrate

    settings = read_server_settings()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    print("migrations applied")


# The top-level spelling of `kiln keys create`, registered here to keep its place in
# `kiln --help` (after migrate, before serve).
app.command("create-key")(keys.create_key)


async def _serve(
    settings: Settings,
    *,
    with_workers: int,
    worker_settings: WorkerSettings | None = None,
    on_ready=None,
) -> None:
    from server.app import build_server
    from server.gc_tuning import tune_collector
    from worker.plan_commands import PLACEHOLDERS, explain_output
    from worker.settings import load_worker_settings

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # PlanJob shows the argument lists the worker's own builders make: the composition root
    # hands them to the server, which never imports the worker.
    server = build_server(settings, explain=explain_output, placeholders=PLACEHOLDERS)
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
    tune_collector(settings.gc_gen0_threshold)
    if with_workers:
        from worker.loop import Worker
        from worker.metrics import WorkerMetrics

        embedded = embedded_worker_settings(
            settings, worker_settings or load_worker_settings(), with_workers
        )
        # The embedded worker's metrics show on the server's /metrics (and on its own port
        # only when KILN_WORKER_METRICS_PORT is set).
        worker_metrics = WorkerMetrics()
        server.metrics.include(worker_metrics.registry)
        worker_task = asyncio.create_task(Worker(embedded, worker_metrics).run(stop))
    if on_ready:
        on_ready()
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if worker_task:
        await worker_task
    server.request_stop()
    await serving


@app.command()
def serve() -> None:
    """Run the API server (gRPC and HTTP listeners)."""
    refusing(lambda: asyncio.run(_serve(read_server_settings(), with_workers=0)))


@app.command()
def worker() -> None:
    """Run a worker that claims tasks from the server."""
    refusing(_run_worker)


def _run_worker() -> None:
    from worker.loop import Worker

    settings = read_worker_settings()

    async def run() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        await Worker(settings).run(stop)

    asyncio.run(run())


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


@app.command()
def up(
    workers: Annotated[
        int, typer.Option("--workers", help="Concurrent tasks of the embedded worker.")
    ] = 2,
) -> None:
    """Migrate, serve and run workers in one process."""
    refusing(lambda: _up(workers))


def _up(workers: int) -> None:
    from worker.settings import load_worker_settings

    settings = read_server_settings()
    worker_settings = load_worker_settings()
    key_file = settings.data_dir / "dev_api_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if key_file.exists():
        key = key_file.read_text().strip()
    else:
        key = asyncio.run(create_api_key(settings, DEFAULT_ORGANIZATION, "development"))
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
        path_setting = _path_setting()
        print(
            f"""
kiln is up.
  Connect/HTTP: {base}    gRPC: {settings.grpc_host}:{settings.grpc_port}
  API key (development, organization {DEFAULT_ORGANIZATION}): {key}

Use the kiln command (paste these into another shell):
  export {path_setting}KILN_URL={base} KILN_API_KEY={key}
  kiln jobs create --input {body["input_url"]} -o hls:h264:720p,360p -o mp4:h264:480p --wait
  kiln jobs play latest          # each output's playback URL (add --open for the dashboard)

Or curl, Connect JSON:
  curl -s {base}/kiln.v1.JobService/Create \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
    -d '{json.dumps(body)}'
Then get it (put the id from the answer in):
  curl -s {base}/kiln.v1.JobService/Get \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{"id": "JOB_ID"}}'
""",
            flush=True,
        )

    asyncio.run(
        _serve(
            settings,
            with_workers=workers,
            worker_settings=worker_settings,
            on_ready=announce,
        )
    )


def _path_setting() -> str:
    """`PATH=…:$PATH ` when a new shell would not find this `kiln` (`make run` starts the
    one in the project's virtualenv, whose bin folder is on no one's PATH), else ""."""
    here = Path(sys.executable).parent
    found = shutil.which("kiln")
    if found is not None and Path(found).parent == here:
        return ""
    return f"PATH={shlex.quote(str(here.absolute()))}:$PATH "


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="kiln")


if __name__ == "__main__":
    main()
