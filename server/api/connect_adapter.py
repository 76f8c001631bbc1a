"""Connect (JSON and binary) and gRPC-web: the RPC tables mounted on the generated apps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, TypeVar

from kiln.v1.job_service_connect import JobServiceASGIApplication
from kiln.v1.origin_service_connect import OriginServiceASGIApplication
from kiln.v1.preset_service_connect import PresetServiceASGIApplication
from kiln.v1.webhook_service_connect import WebhookServiceASGIApplication

from ..jobs.service import JobService
from ..origins.catalog import OriginCatalog
from ..webhooks.settings import WebhookSettingsService
from .auth import Authenticator
from .errors import connect_stream, connect_unary
from .json_codec import connect_codecs
from .rpc_table import JOB_SERVICE, ORIGIN_SERVICE, PRESET_SERVICE, WEBHOOK_SERVICE, Service

U = TypeVar("U")


def method_attribute(rpc_name: str) -> str:
    """The attribute a generated application calls for an RPC: DeleteOutputs -> delete_outputs."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc_name).lower()


def connect_service(service: Service[U], uses: U, auth: Authenticator) -> Any:
    """The service object a generated *ASGIApplication takes: an async method per RPC,
    (request, ctx), each behind the error boundary.

    Typed Any: it is built from the table, so the generated protocol (one attribute per
    method) cannot be checked against it; tests/unit/test_rpc_table.py checks it instead.
    """
    return SimpleNamespace(
        **{
            method_attribute(rpc.name): (connect_stream if rpc.stream else connect_unary)(
                service.method_path(rpc), rpc, uses, auth
            )
            for rpc in service.rpcs
        }
    )


def connect_apps(
    jobs: JobService,
    auth: Authenticator,
    interceptors: Sequence = (),
    webhooks: WebhookSettingsService | None = None,
    origins: OriginCatalog | None = None,
) -> list:
    # JSON bodies are parsed strictly and take short enum names (json_codec); the
    # generated default would drop unknown fields and enum values without a word.
    codecs = connect_codecs()
    # The interceptors (tracing) wrap each endpoint inside the generated application.
    apps = [
        JobServiceASGIApplication(
            connect_service(JOB_SERVICE, jobs, auth), interceptors=interceptors, codecs=codecs
        ),
        PresetServiceASGIApplication(
            connect_service(PRESET_SERVICE, jobs.presets, auth),
            interceptors=interceptors,
            codecs=codecs,
        ),
    ]
    if webhooks is not None:
        apps.append(
            WebhookServiceASGIApplication(
                connect_service(WEBHOOK_SERVICE, webhooks, auth),
                interceptors=interceptors,
                codecs=codecs,
            )
        )
    if origins is not None:
        apps.append(
            OriginServiceASGIApplication(
                connect_service(ORIGIN_SERVICE, origins, auth),
                interceptors=interceptors,
                codecs=codecs,
            )
        )
    return apps
