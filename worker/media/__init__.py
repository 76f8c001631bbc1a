"""FFmpeg media layer: probing inputs, building and running ffmpeg commands, describing outputs.

Everything here is independent of the queue and storage: callers hand in local paths (or
http(s) URLs for probing) and get protobuf messages or MediaError back.
"""

from worker.media.errors import MediaError

__all__ = ["MediaError"]
