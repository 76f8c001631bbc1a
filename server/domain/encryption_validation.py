"""Validation of an output's encryption request (OutputSpec.encryption).

Which scheme fits which package is what the workers can write and the players can open:
AES-128 is HLS's own whole-segment encryption (TS or fMP4 segments); CENC is the common
encryption of fMP4 that DASH players decrypt through EME (W3C Clear Key). HLS players take
no CENC from kiln's playlists (hls.js plays CENC only with a DRM system's license), so an
HLS output asks for AES-128 and a CMAF output, whose HLS side shares the DASH segments, gets
CENC. Rotation is an HLS feature (a new EXT-X-KEY every N segments); a DASH MPD names one
default KID, so CENC takes no rotation.
"""

from __future__ import annotations

from collections.abc import Callable

from kiln.v1 import job_pb2

T = job_pb2.OutputType
S = job_pb2.EncryptionScheme

Bad = Callable[[str, str], None]
SCHEMES_BY_TYPE: dict[int, int] = {
    T.OUTPUT_TYPE_HLS: S.ENCRYPTION_SCHEME_AES_128,
    T.OUTPUT_TYPE_DASH: S.ENCRYPTION_SCHEME_CENC,
    T.OUTPUT_TYPE_CMAF: S.ENCRYPTION_SCHEME_CENC,
}
# A key for every segment of a 24-hour output at 1 s segments is 86,400 keys; a rotation
# shorter than that is what a typo looks like, and a bound keeps the key table small.
MAX_ROTATE_EVERY_SEGMENTS = 100_000
SCHEMES = frozenset(S.values())


def check_encryption(path: str, output: job_pb2.OutputSpec, bad: Bad) -> None:
    """Report every problem of output.encryption under `path` (the output's own path)."""
    if not output.HasField("encryption"):
        return
    encryption = output.encryption
    where = f"{path}.encryption"
    if output.HasField("custom"):
        bad(where, "custom commands cannot be encrypted: use an HLS, DASH or CMAF output")
        return
    fitting = SCHEMES_BY_TYPE.get(output.type)
    if fitting is None:
        type_name = T.Name(output.type).removeprefix("OUTPUT_TYPE_")
        bad(
            where,
            f"only HLS (AES-128), DASH and CMAF (CENC) outputs can be encrypted, not {type_name}",
        )
        return
    scheme = encryption.scheme
    if scheme == S.ENCRYPTION_SCHEME_UNSPECIFIED:
        bad(f"{where}.scheme", "is required: AES_128 for HLS, CENC for DASH and CMAF")
    elif scheme not in SCHEMES:
        bad(f"{where}.scheme", f"unknown encryption scheme {scheme}")
    elif scheme != fitting:
        type_name = T.Name(output.type).removeprefix("OUTPUT_TYPE_")
        bad(
            f"{where}.scheme",
            f"{type_name} outputs take {S.Name(fitting).removeprefix('ENCRYPTION_SCHEME_')}, "
            f"not {S.Name(scheme).removeprefix('ENCRYPTION_SCHEME_')}",
        )
    if not encryption.HasField("rotate_every_segments"):
        return
    rotation = encryption.rotate_every_segments
    if rotation < 1:
        bad(f"{where}.rotate_every_segments", "must be at least 1 (or unset for one key)")
    elif rotation > MAX_ROTATE_EVERY_SEGMENTS:
        bad(f"{where}.rotate_every_segments", f"must be at most {MAX_ROTATE_EVERY_SEGMENTS}")
    elif scheme == S.ENCRYPTION_SCHEME_CENC:
        bad(
            f"{where}.rotate_every_segments",
            "key rotation is for AES-128 HLS only; a CENC output has one key",
        )
