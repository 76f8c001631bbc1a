"""CreatePlaybackGrant: what one viewer needs to play a job's outputs, for a while.

For each output asked for (one, or every output with files) the grant is its playback URL
and, for an encrypted output, a key token: its own HMAC (delivery.tokens, purpose
"kiln-key") for that output and the job's current attempt, expiring when the caller says
(a TTL or a moment, at most KILN_KEY_TOKEN_MAX_TTL_SECONDS ahead). The token rides in the
playback URL's query (`?kt=`), which is how kiln rewrites the playlists it serves to that
viewer (delivery.key_playlists); segments stay one URL for every viewer.

Anyone who may Get the job may make a grant: the grant gives nothing a Get does not,
except keys for a short while (a job's owner hands grants to its viewers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kiln.v1 import job_pb2, job_service_pb2

from ..delivery.key_playlists import CLEARKEY_NAME, KEY_TOKEN_QUERY, key_url_prefix
from ..delivery.tokens import PlaybackTokens
from ..domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from .reads import JobReads

MIN_TTL_SECONDS = 1


@dataclass(frozen=True)
class GrantSettings:
    key_tokens: PlaybackTokens
    default_ttl_seconds: int
    max_ttl_seconds: int
    clock: Callable[[], float] = time.time


class PlaybackGrants:
    def __init__(self, reads: JobReads, settings: GrantSettings, server_url: str) -> None:
        self.reads = reads
        self.key_tokens = settings.key_tokens
        # Key URLs are absolute, on kiln's own public URL (like the /play/ URLs).
        self.server_url = server_url.rstrip("/")
        self.max_ttl_seconds = settings.max_ttl_seconds
        self.default_ttl_seconds = min(settings.default_ttl_seconds, settings.max_ttl_seconds)
        self.clock = settings.clock

    async def create(
        self, organization_id: str, request: job_service_pb2.CreatePlaybackGrantRequest
    ) -> job_service_pb2.CreatePlaybackGrantResponse:
        expires = self._expiry(request)
        job = await self.reads.get(organization_id, request.id)
        outputs = list(job.outputs)
        if request.output_id:
            outputs = [output for output in job.outputs if output.id == request.output_id]
            if not outputs:
                raise NotFound(f"output {request.output_id!r} of job {job.id!r} not found")
            if not outputs[0].playback_url:
                raise FailedPrecondition(
                    f"output {request.output_id!r} has no files to play yet "
                    f"(status {job_pb2.OutputStatus.Name(outputs[0].status)})"
                )
        response = job_service_pb2.CreatePlaybackGrantResponse()
        for output in outputs:
            if output.playback_url:
                response.grants.append(self._grant(job, output, expires))
        return response

    def _grant(
        self, job: job_pb2.Job, output: job_pb2.Output, expires: int
    ) -> job_service_pb2.PlaybackGrant:
        grant = job_service_pb2.PlaybackGrant(output_id=output.id, playback_url=output.playback_url)
        if output.HasField("playback_url_expire_time"):
            grant.playback_url_expire_time.CopyFrom(output.playback_url_expire_time)
        if not output.HasField("encryption"):
            return grant
        grant.encryption.CopyFrom(output.encryption)
        token = self.key_tokens.mint_until(job.id, output.id, job.attempt, expires)
        grant.key_token = token.text
        grant.key_token_expire_time.FromDatetime(datetime.fromtimestamp(expires, UTC))
        grant.playback_url = f"{output.playback_url}?{KEY_TOKEN_QUERY}={token.text}"
        keys = self.server_url + key_url_prefix(token.text, job.id, output.id)
        grant.key_url_prefix = keys
        if output.encryption.scheme == job_pb2.ENCRYPTION_SCHEME_CENC:
            grant.clearkey_license_url = keys + CLEARKEY_NAME
        return grant

    def _expiry(self, request: job_service_pb2.CreatePlaybackGrantRequest) -> int:
        """The key token's expiry (Unix seconds) the request asks for, checked."""
        moment = self.clock()
        limit = f"at most {self.max_ttl_seconds} s (KILN_KEY_TOKEN_MAX_TTL_SECONDS)"
        if request.HasField("ttl") and request.HasField("expire_time"):
            raise InvalidArgument([FieldViolation("ttl", "set ttl or expire_time, not both")])
        if request.HasField("ttl"):
            seconds = request.ttl.ToTimedelta().total_seconds()
            if not MIN_TTL_SECONDS <= seconds <= self.max_ttl_seconds:
                raise InvalidArgument(
                    [FieldViolation("ttl", f"must be at least {MIN_TTL_SECONDS} s and {limit}")]
                )
            return math.ceil(moment + seconds)
        if request.HasField("expire_time"):
            expires = request.expire_time.ToDatetime(tzinfo=UTC).timestamp()
            if not moment + MIN_TTL_SECONDS <= expires <= moment + self.max_ttl_seconds:
                raise InvalidArgument(
                    [FieldViolation("expire_time", f"must be in the future and {limit} ahead")]
                )
            return math.ceil(expires)
        return math.ceil(moment + self.default_ttl_seconds)
