"""The field violations of a refused request, from either protocol's error details."""

from __future__ import annotations

import base64

import grpc
from google.rpc import error_details_pb2, status_pb2


def violations_from_connect(body: dict) -> dict[str, str]:
    (detail,) = [d for d in body.get("details", []) if d["type"] == "google.rpc.BadRequest"]
    raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    bad = error_details_pb2.BadRequest.FromString(raw)
    return {v.field: v.description for v in bad.field_violations}


def violations_from_grpc(error: grpc.RpcError) -> dict[str, str]:
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return {v.field: v.description for v in bad.field_violations}
