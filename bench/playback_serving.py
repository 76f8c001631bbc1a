"""Benchmark: segment serving through the playback URL against nginx (issue 16), and Get
latency while it runs.

Setup: one `kiln serve` (SQLite) and one worker run a real job, a 2 s synthetic clip to a
one-rung HLS output; the worker is then stopped. `--segments` files of `--segment-kib` KiB of
random bytes are written into that output's folder in storage (`{job}/{output}/bench/…`),
and nginx (Debian's package, a foreground process with this script's own config in a temp
dir, `sendfile on`, access log off) serves the same storage folder, so both answer with the
same bytes from the same page cache.

Load: `wrk` (native, Debian's package) with `--connections` keep-alive connections and
`--threads` threads for `--seconds`, each request the next of the segments in turn: through
`/play/{token}/{job}/{output}/bench/seg_NNN.ts` on kiln's HTTP listener (the one that also
serves Connect RPCs), and `/{job}/{output}/bench/seg_NNN.ts` on nginx. Requests/s, latency
p50/p99 (wrk's own histogram), and the CPU time the server process(es) used per request.

Get latency: a separate client process makes paced sequential Get calls on the job, one over
Connect JSON (HTTP/1.1 POST on the same listener as the segments) and one over native gRPC,
every `--get-interval` s: alone (no load), while kiln serves the segment load, and while nginx
serves it (the machine is as busy, kiln's event loop is not: the control).

A third side, the stack's floor (`--no-floor` to leave it out): a bare uvicorn app (same
uvicorn, h11 and asyncio loop as kiln's listener, access log off) in its own process serving
the same files with one read in a worker thread and one body message. It shows how much of
the gap to nginx is the Python stack and how much is the per-request path kiln takes.

`--rounds` rounds, each alone → kiln → nginx → floor (reversed every other round); medians
over rounds. Target: kiln ≥ 0.3x nginx's requests/s, and no Get regression under load.

nginx runs `worker_processes 1` by default: kiln serves from one process with one event loop,
so one nginx worker is the like-for-like process count, and on a 2-core machine a second
worker would take the core wrk needs (`--nginx-workers auto` to compare).

Run: .venv/bin/python bench/playback_serving.py [--rounds 5] [--seconds 10]
     [--connections 64] [--threads 2] [--segments 64] [--segment-kib 256]
     [--nginx-workers 1] [--no-floor] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import grpc  # noqa: E402
import httpx  # noqa: E402
from kiln.v1 import job_pb2, job_service_pb2  # noqa: E402

from bench.cp_support import (  # noqa: E402
    free_port,
    machine_line,
    make_clip,
    print_and_record,
    stop_process,
)
from tests.e2e.cluster import Cluster  # noqa: E402
from tests.e2e.jobs import create_job, run_to_end  # noqa: E402

TARGET_RATIO = 0.3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_MARK = "WRK-JSON "
WORKERS_WHY = ": one process, as kiln is one, and the other core left to wrk"

# wrk: each thread walks the segment list from its own offset; `done` prints the summary as
# one JSON line (latencies in microseconds).
WRK_SCRIPT = """
local paths = {%(paths)s}
local counter = 0
function setup(thread)
  thread:set("offset", counter * 7)
  counter = counter + 1
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, '
    .. '"read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, '
    .. '"p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""

NGINX_CONF = """
worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
%(user)s
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; video/mp4 m4s mp4; }
    default_type application/octet-stream;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
    }
}
"""


# -- processes ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


class Nginx:
    """nginx in the foreground (`daemon off`) with its own config, on a free loopback port."""

    def __init__(self, root: Path, workdir: Path, workers: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # As root, nginx would run its workers as `nobody`, who cannot enter the temp dir.
        user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
        conf = workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF
            % {
                "workers": workers,
                "dir": workdir,
                "user": user,
                "port": self.port,
                "root": root,
            }
        )
        command = [nginx_binary(), "-p", f"{workdir}/", "-e", str(workdir / "error.log")]
        command += ["-c", str(conf), "-g", "daemon off;"]
        self.process = subprocess.Popen(command, stderr=(workdir / "stderr.log").open("w"))
        self.workdir = workdir
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(workdir / 'stderr.log').read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """The workers' CPU (the master only supervises)."""
        return sum(cpu_seconds(pid) for pid in children(self.process.pid))

    def version(self) -> str:
        result = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
        return result.stderr.strip().removeprefix("nginx version: nginx/")

    def stop(self) -> None:
        # SIGQUIT: nginx's graceful stop.
        stop_process(self.process, signal.SIGQUIT)


class StackFloor:
    """The bare uvicorn app (this file with --floor-serve) as its own process."""

    def __init__(self, root: Path, log: Path) -> None:
        self.port = free_port()
        command = [sys.executable, __file__, "--floor-serve", "--port", str(self.port)]
        command += ["--root", str(root)]
        self.process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"floor server exited: {log.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("floor server did not start listening")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)


def floor_main(args) -> None:
    """A bare ASGI app on uvicorn: GET {path} → the file under --root, read whole in a worker
    thread, sent as one body message. No checks beyond staying under the root."""
    import anyio
    import uvicorn

    root = Path(args.root).resolve()

    async def app(scope, receive, send) -> None:
        path = (root / scope["path"].lstrip("/")).resolve()
        if not path.is_relative_to(root):
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = await anyio.to_thread.run_sync(path.read_bytes)
        headers = [(b"content-type", b"video/mp2t"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def ensure_tools() -> None:
    missing = [] if Path(nginx_binary()).exists() else ["nginx"]
    missing += [] if shutil.which("wrk") else ["wrk"]
    if missing:
        sys.exit(
            f"missing {' and '.join(missing)}: apt-get update && apt-get install -y nginx wrk "
            "(or run `make bench-playback`, which does)"
        )


# -- the load (wrk) -----------------------------------------------------------------------


def run_wrk(url: str, paths: list[str], args, workdir: Path, cpu_of) -> dict:
    """One wrk run; its summary, plus the server CPU used per request."""
    script = workdir / "segments.lua"
    script.write_text(
        WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths), "mark": WRK_MARK}
    )
    command = ["wrk", "-t", str(args.threads), "-c", str(args.connections)]
    command += ["-d", f"{args.seconds:g}s", "--timeout", "10s", "-s", str(script), url]
    cpu_before = cpu_of()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    # wait4, not wait: the client's own CPU time tells whether wrk was the limit.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = cpu_of() - cpu_before
    lines = [line for line in output.splitlines() if line.startswith(WRK_MARK)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    summary = json.loads(lines[-1].removeprefix(WRK_MARK))
    seconds = summary["duration_us"] / 1e6
    requests = summary["requests"]
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "rps": requests / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
        "bytes_per_request": summary["bytes"] / max(requests, 1),
        "errors": errors,
        "server_cpu_us_per_request": server_cpu / max(requests, 1) * 1e6,
        "server_cores": server_cpu / seconds,
        "client_cores": (usage.ru_utime + usage.ru_stime) / seconds,
    }


# -- the Get probe (run as its own process) -------------------------------------------------


def probe_main(args) -> None:
    """Paced sequential Gets (Connect JSON, then gRPC), after `--start-after` s, until
    `--count` pairs or `--probe-seconds` s; prints the latencies as JSON."""
    auth = f"Bearer {args.key}"
    http = httpx.Client(
        base_url=args.http_url,
        headers={"Authorization": auth, "Content-Type": "application/json"},
        timeout=30,
    )
    body = json.dumps({"id": args.job_id}).encode()
    channel = grpc.insecure_channel(args.grpc_target)
    get = channel.unary_unary(
        "/kiln.v1.JobService/Get", response_deserializer=job_service_pb2.GetResponse.FromString
    )
    request = job_service_pb2.GetRequest(id=args.job_id).SerializeToString()
    metadata = (("authorization", auth),)
    # Connections up and code warm before the clock starts.
    for _ in range(5):
        http.post("/kiln.v1.JobService/Get", content=body).raise_for_status()
        get(request, metadata=metadata)
    time.sleep(max(0.0, args.start_after))
    connect: list[float] = []
    native: list[float] = []
    errors = 0
    stop_at = time.monotonic() + args.probe_seconds
    while len(connect) < args.count and time.monotonic() < stop_at:
        began = time.perf_counter()
        response = http.post("/kiln.v1.JobService/Get", content=body)
        middle = time.perf_counter()
        if response.status_code == 200:
            connect.append(middle - began)
        else:
            errors += 1
        try:
            get(request, metadata=metadata, timeout=30)
            native.append(time.perf_counter() - middle)
        except grpc.RpcError:
            errors += 1
        time.sleep(args.get_interval)
    print(json.dumps({"connect": connect, "grpc": native, "errors": errors}))


def start_probe(ctx: dict, args, *, start_after: float, seconds: float) -> subprocess.Popen:
    command = [sys.executable, __file__, "--probe", "--http-url", ctx["http_url"]]
    command += ["--grpc-target", ctx["grpc_target"], "--key", ctx["key"]]
    command += ["--job-id", ctx["job_id"], "--count", str(args.get_count)]
    command += ["--start-after", str(start_after), "--probe-seconds", str(seconds)]
    command += ["--get-interval", str(args.get_interval)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"},
    )


def probe_result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=120)
    result = json.loads(out)
    if result["errors"]:
        print(f"  Get probe: {result['errors']} errors", flush=True)
    return {
        "connect_p50_ms": statistics.median(result["connect"]) * 1000,
        "grpc_p50_ms": statistics.median(result["grpc"]) * 1000,
        "connect_p99_ms": percentile(result["connect"], 0.99) * 1000,
        "grpc_p99_ms": percentile(result["grpc"], 0.99) * 1000,
        "calls": len(result["connect"]),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- setup --------------------------------------------------------------------------------


def make_output(root: Path) -> tuple[Cluster, dict]:
    """A real job's HLS output through a server and a worker; the worker is then stopped."""
    media = make_clip(root / "media" / "in.mp4", seconds=2, size="320x180")
    cluster = Cluster(
        f"sqlite:///{root / 'kiln.db'}",
        root / "kiln",
        root / "media",
        settings={"KILN_LOG_LEVEL": "WARNING"},
    )
    cluster.root.mkdir(parents=True, exist_ok=True)
    try:
        server = cluster.start_server()
        key = cluster.create_key("org_bench")
        auth = (("authorization", f"Bearer {key}"),)
        worker = cluster.start_worker(server)
        hls = job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_HLS,
            video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
        )
        job = create_job(server, auth, f"file://{media}", outputs=[hls])
        final = run_to_end(server, auth, job.id, timeout=120)
        if final.status != job_pb2.JOB_STATUS_COMPLETED:
            raise RuntimeError(f"setup job ended {job_pb2.JobStatus.Name(final.status)}")
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        output = final.outputs[0]
        return cluster, {
            "server": server,
            "key": key,
            "job_id": final.id,
            "output_id": output.id,
            "playback_url": output.playback_url,
            "play_base_path": urlsplit(output.playback_base_url).path,
            "http_url": server.http_url,
            "grpc_target": server.grpc_target,
            "folder": cluster.storage_dir / final.id / output.id,
        }
    except Exception:
        print(cluster.logs())
        cluster.stop()
        raise


def write_segments(folder: Path, count: int, size: int) -> list[str]:
    """`count` segment files of `size` random bytes under the output's folder."""
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(count):
        name = f"bench/seg_{n:03d}.ts"
        (folder / name).write_bytes(os.urandom(size))
        names.append(name)
    return names


def check_same_bytes(kiln_paths, nginx_paths, ctx, nginx: Nginx, folder: Path, names) -> None:
    """Both servers answer 200 with the stored bytes (first and last segment)."""
    with httpx.Client(timeout=10) as client:
        for index in (0, len(names) - 1):
            stored = (folder / names[index]).read_bytes()
            for base, path in (
                (ctx["http_url"], kiln_paths[index]),
                (nginx.url, nginx_paths[index]),
            ):
                response = client.get(base + path)
                if response.status_code != 200 or response.content != stored:
                    raise RuntimeError(f"{base}{path}: {response.status_code}, wrong bytes")


# -- the benchmark ------------------------------------------------------------------------


def benchmark(args, root: Path) -> dict:
    cluster, ctx = make_output(root)
    nginx: Nginx | None = None
    floor: StackFloor | None = None
    try:
        names = write_segments(ctx["folder"], args.segments, args.segment_kib * 1024)
        prefix = f"/{ctx['job_id']}/{ctx['output_id']}/"
        kiln_paths = [ctx["play_base_path"] + name for name in names]
        nginx_paths = [prefix + name for name in names]
        nginx = Nginx(cluster.storage_dir, root / "nginx", args.nginx_workers)
        check_same_bytes(kiln_paths, nginx_paths, ctx, nginx, ctx["folder"], names)
        kiln_pid = ctx["server"].process.pid
        sides = {
            "kiln": (ctx["http_url"], kiln_paths, lambda: cpu_seconds(kiln_pid)),
            "nginx": (nginx.url, nginx_paths, nginx.cpu_seconds),
        }
        if not args.no_floor:
            floor = StackFloor(cluster.storage_dir, root / "floor.log")
            sides["floor"] = (floor.url, nginx_paths, floor.cpu_seconds)
        print(f"playback URL: {ctx['playback_url']}", flush=True)
        print(f"nginx {nginx.version()} on {nginx.url}, root {cluster.storage_dir}", flush=True)
        # Warm both (page cache, connections, code paths); not measured.
        warm = argparse.Namespace(**{**vars(args), "seconds": 2.0})
        for url, paths, cpu_of in sides.values():
            run_wrk(url, paths, warm, root, cpu_of)
        rounds: list[dict] = []
        probe_window = max(1.0, args.seconds - 3.0)
        for number in range(args.rounds):
            result: dict = {}
            alone = start_probe(ctx, args, start_after=0.0, seconds=probe_window)
            result["get_alone"] = probe_result(alone)
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for name in order:
                url, paths, cpu_of = sides[name]
                # Get is measured while kiln and while nginx serve the load (not the floor).
                # The probe waits for wrk's connections to be up and stops before wrk does.
                probe = None
                if name != "floor":
                    probe = start_probe(ctx, args, start_after=1.5, seconds=probe_window)
                result[name] = run_wrk(url, paths, args, root, cpu_of)
                if probe is not None:
                    result[f"get_under_{name}"] = probe_result(probe)
            rounds.append(result)
            floor_text = f", floor {result['floor']['rps']:.0f} req/s" if "floor" in result else ""
            print(
                f"round {number + 1}: kiln {result['kiln']['rps']:.0f} req/s "
                f"(p99 {result['kiln']['p99_ms']:.1f} ms), nginx {result['nginx']['rps']:.0f} "
                f"req/s (p99 {result['nginx']['p99_ms']:.1f} ms){floor_text}, kiln/nginx "
                f"{result['kiln']['rps'] / result['nginx']['rps']:.3f}; Connect Get p50 "
                f"alone {result['get_alone']['connect_p50_ms']:.2f} / under kiln "
                f"{result['get_under_kiln']['connect_p50_ms']:.2f} / under nginx "
                f"{result['get_under_nginx']['connect_p50_ms']:.2f} ms",
                flush=True,
            )
        return {"rounds": rounds, "nginx_version": nginx.version()}
    except Exception:
        print(cluster.logs())
        raise
    finally:
        if nginx is not None:
            nginx.stop()
        if floor is not None:
            floor.stop()
        cluster.stop()


def median_of(rounds: list[dict], side: str, figure: str) -> float:
    return statistics.median(r[side][figure] for r in rounds)


def memory_line() -> str:
    fields = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    total = int(fields["MemTotal"].split()[0]) / 1024 / 1024
    available = int(fields["MemAvailable"].split()[0]) / 1024 / 1024
    return f"memory {total:.1f} GiB, {available:.1f} GiB available at the end"


def report(results: dict, args) -> list[str]:
    rounds = results["rounds"]
    sides = [side for side in ("kiln", "nginx", "floor") if side in rounds[0]]
    ratios = [r["kiln"]["rps"] / r["nginx"]["rps"] for r in rounds]
    ratio = statistics.median(ratios)

    def row(label: str, cell, extra: str, target: str) -> str:
        return f"| {label} | {' | '.join(cell(side) for side in sides)} | {extra}{target} |"

    def figure(name: str, digits: int):
        return lambda side: f"{median_of(rounds, side, name):.{digits}f}"

    floor_note = ""
    floor_ratio = ""
    if "floor" in sides:
        floor_ratio = (
            f"{statistics.median(r['floor']['rps'] / r['nginx']['rps'] for r in rounds):.3f} | "
        )
        floor_note = (
            " Floor: a bare uvicorn ASGI app (same uvicorn/h11/asyncio loop, its own process) "
            "serving the same files with one worker-thread read and one body message."
        )
    lines = [
        "",
        f"## playback_serving — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine_line() + f" Load average at the start {results['load_at_start']:.2f}; "
        f"{memory_line()}.",
        "",
        "Command: `.venv/bin/python bench/playback_serving.py "
        f"--rounds {args.rounds} --seconds {args.seconds:g} --connections {args.connections} "
        f"--threads {args.threads} --segments {args.segments} --segment-kib {args.segment_kib} "
        f"--nginx-workers {args.nginx_workers}` (`make bench-playback`). One `kiln serve` "
        "(SQLite, worker stopped after the setup job); "
        f"{args.segments} segments of {args.segment_kib} KiB in a real HLS output's folder, "
        f"fetched round-robin by `wrk -t {args.threads} -c {args.connections}` (keep-alive, "
        f"{args.seconds:g} s per run) through `/play/{{token}}/…` on kiln's HTTP listener, and "
        f"from the same folder by nginx {results['nginx_version']} (worker_processes "
        f"{args.nginx_workers}{WORKERS_WHY if args.nginx_workers == '1' else ''}; sendfile on, "
        f"access_log off).{floor_note} {args.rounds} rounds, each: Get alone, then each server "
        "under load (order reversed every other round); medians over rounds. Get: paced "
        f"sequential calls (one Connect JSON + one gRPC every {args.get_interval * 1000:g} ms) "
        "from a separate process.",
        "",
        "| figure | kiln | nginx |"
        + (" bare uvicorn (floor) |" if "floor" in sides else "")
        + " kiln/nginx |"
        + (" floor/nginx |" if "floor" in sides else "")
        + " target |",
        "|---|---|---|"
        + ("---|" if "floor" in sides else "")
        + "---|"
        + ("---|" if "floor" in sides else "")
        + "---|",
        row(
            "segments/s (median)",
            figure("rps", 0),
            f"{ratio:.3f} (rounds {min(ratios):.3f} to {max(ratios):.3f}) | " + floor_ratio,
            f"≥ {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'missed'}",
        ),
        row(
            "latency p50 / p99 (ms)",
            lambda side: (
                f"{median_of(rounds, side, 'p50_ms'):.1f} / {median_of(rounds, side, 'p99_ms'):.1f}"
            ),
            "| " * (1 + ("floor" in sides)),
            "—",
        ),
        row(
            "server CPU per segment (µs)",
            figure("server_cpu_us_per_request", 0),
            "| " * (1 + ("floor" in sides)),
            "—",
        ),
        row(
            "server / wrk cores busy",
            lambda side: (
                f"{median_of(rounds, side, 'server_cores'):.2f} / "
                f"{median_of(rounds, side, 'client_cores'):.2f}"
            ),
            "| " * (1 + ("floor" in sides)),
            "—",
        ),
        row(
            "errors (total)",
            lambda side: str(sum(r[side]["errors"] for r in rounds)),
            "| " * (1 + ("floor" in sides)),
            "0",
        ),
        "",
        "| Get p50 / p99 (ms) | alone | while kiln serves segments | while nginx serves them |",
        "|---|---|---|---|",
    ]
    for label, key in (("Connect JSON", "connect"), ("gRPC", "grpc")):
        cells = []
        for where in ("get_alone", "get_under_kiln", "get_under_nginx"):
            cells.append(
                f"{median_of(rounds, where, f'{key}_p50_ms'):.2f} / "
                f"{median_of(rounds, where, f'{key}_p99_ms'):.2f}"
            )
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--segments", type=int, default=64)
    parser.add_argument("--segment-kib", type=int, default=256)
    parser.add_argument("--nginx-workers", default="1")
    parser.add_argument("--get-count", type=int, default=400)
    parser.add_argument("--get-interval", type=float, default=0.02)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--floor-serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--job-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-after", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--probe-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_main(args)
        return
    if args.floor_serve:
        floor_main(args)
        return
    ensure_tools()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kiln-play-") as tmp:
        results = benchmark(args, Path(tmp))
    results["load_at_start"] = load_at_start
    print(json.dumps(results, indent=1), flush=True)
    print_and_record(report(results, args), record=not args.no_record)


if __name__ == "__main__":
    main()
