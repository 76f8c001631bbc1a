"""OriginService use cases: an organization's origins, checked before they are saved.

A secret reaches this module in a request, is checked, sealed with the secrets keyring and
stored; answers carry its fingerprint only. Nothing is stored when the origin cannot be
used: the check (write, read back, delete a probe object) runs before the INSERT.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import replace

from kiln.v1 import origin_service_pb2 as opb
from kiln.worker.v1.worker_service_pb2 import TranscodeResult

from common.input_policy import InputPolicy

from ..domain import ids
from ..domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ..domain.new_records import NewOrigin
from ..jobs.paging import page_limit, page_size_violation
from ..jobs.views import timestamp
from ..secrets_keyring import SecretsKeyring, fingerprint
from ..store.models import Origin
from ..store.store import Store, now
from .connections import Connection, OriginUnusable
from .directory import ServerOrigins, secret_context
from .kinds import (
    CheckedOrigin,
    GcsSettings,
    HttpSettings,
    S3Settings,
    check_origin,
    settings_from_row,
    use_enum,
)

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50


def origin_message(row: Origin) -> opb.Origin:
    """An origin as answers show it: every setting, the secret as its fingerprint."""
    message = opb.Origin(
        id=row.id, name=row.name, use=use_enum(row.use), public_base_url=row.public_base_url
    )
    settings = settings_from_row(row.kind, row.settings)
    if isinstance(settings, S3Settings):
        message.s3.CopyFrom(
            opb.S3Origin(
                endpoint_url=settings.endpoint_url,
                region=settings.region,
                bucket=settings.bucket,
                prefix=settings.prefix,
                path_style=settings.path_style,
                access_key_id=settings.access_key_id,
                secret_access_key_fingerprint=row.secret_fingerprint,
            )
        )
    elif isinstance(settings, GcsSettings):
        message.gcs.CopyFrom(
            opb.GcsOrigin(
                bucket=settings.bucket,
                prefix=settings.prefix,
                service_account_key_fingerprint=row.secret_fingerprint,
            )
        )
    else:
        message.http.CopyFrom(
            opb.HttpOrigin(
                base_url=settings.base_url,
                header_name=settings.header_name,
                header_value_fingerprint=row.secret_fingerprint,
            )
        )
    for moment, target in (
        (row.created_at, message.create_time),
        (row.updated_at, message.update_time),
    ):
        if (stamp := timestamp(moment)) is not None:
            target.CopyFrom(stamp)
    return message


class OriginCatalog:
    def __init__(
        self, store: Store, keyring: SecretsKeyring, policy: InputPolicy, origins: ServerOrigins
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.policy = policy
        self.origins = origins

    async def create(self, organization_id: str, message: opb.Origin) -> opb.Origin:
        checked = await self._checked(message)
        if not checked.secret and checked.origin.kind == "s3":
            raise InvalidArgument([FieldViolation("origin.s3.secret_access_key", "is required")])
        await self._try(Connection(checked.origin.settings, checked.secret))
        origin_id = ids.new_id("ori")
        moment = now()
        new = NewOrigin(
            id=origin_id,
            organization_id=organization_id,
            created_at=moment,
            **self._stored_fields(origin_id, organization_id, checked),
        )
        async with self.store.transaction() as tx:
            row = await tx.origins.insert_origin(new)
        log.info("origin %s created (%s) for %s", origin_id, row.kind, organization_id)
        return origin_message(row)

    async def get(self, organization_id: str, origin_id: str) -> opb.Origin:
        return origin_message(await self._row(organization_id, origin_id))

    async def list(
        self, organization_id: str, request: opb.ListOriginsRequest
    ) -> opb.ListOriginsResponse:
        if (bad_size := page_size_violation(request.page_size, DEFAULT_PAGE_SIZE)) is not None:
            raise InvalidArgument([bad_size])
        offset = _decode_offset(request.page_token) if request.page_token else 0
        if offset is None:
            raise InvalidArgument(
                [FieldViolation("page_token", "is not a token this server issued")]
            )
        limit = page_limit(request.page_size, DEFAULT_PAGE_SIZE)
        async with self.store.reading() as tx:
            rows = await tx.origins.list_origins(organization_id, limit + 1, offset)
        response = opb.ListOriginsResponse(origins=[origin_message(row) for row in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = _encode_offset(offset + limit)
        return response

    async def update(self, organization_id: str, message: opb.Origin) -> opb.Origin:
        if not message.id:
            raise InvalidArgument([FieldViolation("origin.id", "is required")])
        current = await self._row(organization_id, message.id)
        checked = await self._checked(message)
        if checked.origin.kind != current.kind:
            raise InvalidArgument(
                [FieldViolation("origin.kind", f"an origin's kind stays {current.kind}")]
            )
        if not checked.secret and current.sealed_secret:
            # An empty secret keeps the stored one (answers never show it to copy back).
            stored = self.keyring.open(
                current.sealed_secret, context=secret_context(current.id, organization_id)
            )
            checked = replace(checked, secret=stored)
            if isinstance(checked.origin.settings, GcsSettings):
                email = settings_from_row(current.kind, current.settings)
                assert isinstance(email, GcsSettings)
                settings = replace(checked.origin.settings, client_email=email.client_email)
                checked = replace(checked, origin=replace(checked.origin, settings=settings))
        if (
            isinstance(checked.origin.settings, HttpSettings)
            and not checked.origin.settings.header_name
        ):
            checked = replace(checked, secret="")
        await self._try(Connection(checked.origin.settings, checked.secret))
        fields = {**self._stored_fields(current.id, organization_id, checked), "updated_at": now()}
        async with self.store.transaction() as tx:
            row = await tx.origins.update_origin(organization_id, current.id, **fields)
            if row is None:
                raise NotFound(f"origin {current.id!r} not found")
        self.origins.forget(current.id)
        log.info("origin %s updated for %s", current.id, organization_id)
        return origin_message(row)

    async def delete(self, organization_id: str, origin_id: str) -> None:
        async with self.store.transaction() as tx:
            if await tx.origins.origin_by_id(organization_id, origin_id) is None:
                raise NotFound(f"origin {origin_id!r} not found")
            if await tx.origins.origin_used_by_open_jobs(origin_id) or any(
                TranscodeResult.FromString(result).files
                for result in await tx.origins.output_results_on_origin(origin_id)
            ):
                raise FailedPrecondition(
                    f"origin {origin_id} is in use: jobs read from it or have output files on "
                    "it; delete those outputs (DeleteOutputs) first"
                )
            await tx.origins.delete_origin(organization_id, origin_id)
        self.origins.forget(origin_id)

    async def _row(self, organization_id: str, origin_id: str) -> Origin:
        async with self.store.reading() as tx:
            row = await tx.origins.origin_by_id(organization_id, origin_id)
        if row is None:
            raise NotFound(f"origin {origin_id!r} not found")
        return row

    async def _checked(self, message: opb.Origin) -> CheckedOrigin:
        # Resolving hosts blocks: off the event loop.
        checked, violations = await asyncio.to_thread(check_origin, message, self.policy)
        if violations or checked is None:
            raise InvalidArgument(violations)
        return checked

    async def _try(self, connection: Connection) -> None:
        try:
            await asyncio.to_thread(connection.check)
        except OriginUnusable as error:
            raise FailedPrecondition(str(error)) from None

    def _stored_fields(self, origin_id: str, organization_id: str, checked: CheckedOrigin) -> dict:
        origin = checked.origin
        sealed = ""
        if checked.secret:
            sealed = self.keyring.seal(
                checked.secret, context=secret_context(origin_id, organization_id)
            )
        return {
            "name": origin.name,
            "kind": origin.kind,
            "use": origin.use,
            "settings": origin.settings_json(),
            "sealed_secret": sealed,
            "secret_fingerprint": _fingerprint(origin.kind, origin, checked.secret),
            "public_base_url": origin.public_base_url,
        }


def _fingerprint(kind: str, origin, secret: str) -> str:
    if not secret:
        return ""
    if isinstance(origin.settings, GcsSettings):
        return origin.settings.client_email
    return fingerprint(secret)


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"origins:{offset}".encode()).decode()


def _decode_offset(token: str) -> int | None:
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if kind != "origins" or not number.isdigit():
        return None
    return int(number)
