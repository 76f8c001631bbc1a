"""What the control-plane benchmarks share: a kiln server as a process, a bare grpc.aio
floor serving fixed answers on the same method paths, client processes, percentiles.

The floor answers `/kiln.v1.JobService/{Create,Get,List}` with bytes captured from kiln's
own answers in the same run, so both sides move the same messages over the same client.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Ask a benchmark's helper process to stop; killed if it has not within 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def print_and_record(lines: list[str], record: bool) -> None:
    """A benchmark's report on stdout, and appended to bench/RESULTS.md unless --no-record."""
    print("\n".join(lines))
    if record:
        with RESULTS.open("a") as handle:
            handle.write("\n".join(lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in the values' unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values) * 1000,
        "p99": percentile(values, 0.99) * 1000,
        "max": max(values) * 1000,
    }


def machine_line() -> str:
    load = os.getloadavg()
    return (
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average at the end {load[0]:.2f} / {load[1]:.2f}."
    )


def make_clip(path: Path, seconds: int = 4, size: str = "320x180") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast"]
    command += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(command, check=True)
    return path


class FloorServer:
    """A bare grpc.aio server answering the JobService paths with fixed bytes."""

    def __init__(self, answers: dict[str, bytes], workdir: Path) -> None:
        self.port = free_port()
        answers_file = workdir / "floor-answers.json"
        answers_file.write_text(json.dumps({k: v.hex() for k, v in answers.items()}))
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.port), str(answers_file)],
            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("floor server did not start")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve_floor(port: int, answers_file: Path) -> None:
    import asyncio

    import grpc

    answers = {k: bytes.fromhex(v) for k, v in json.loads(answers_file.read_text()).items()}

    def answering(name: str):
        answer = answers[name]

        async def handle(request: bytes, context) -> bytes:
            return answer

        return grpc.unary_unary_rpc_method_handler(handle)

    async def run() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "kiln.v1.JobService", {name: answering(name) for name in answers}
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(run())


if __name__ == "__main__":
    serve_floor(int(sys.argv[1]), Path(sys.argv[2]))
