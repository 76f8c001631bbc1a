"""The options of `kiln origins create` and `update`, and the kinds and uses they name."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from kiln.v1 import origin_service_pb2 as opb


class Kind(StrEnum):
    S3 = "s3"
    GCS = "gcs"
    HTTP = "http"


class Use(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"


USE_VALUES = {
    Use.INPUT: opb.ORIGIN_USE_INPUT,
    Use.OUTPUT: opb.ORIGIN_USE_OUTPUT,
    Use.BOTH: opb.ORIGIN_USE_INPUT_AND_OUTPUT,
}
USE_NAMES = {value: use.value for use, value in USE_VALUES.items()}

# The options create and update share. On update an option left out keeps the stored value,
# and '' clears a text field (--prefix '').
NameOption = Annotated[str | None, typer.Option("--name", help="A name for people.")]
KindOption = Annotated[Kind | None, typer.Option("--kind", help="What kind of storage it is.")]
UseOption = Annotated[
    Use | None,
    typer.Option(
        "--use",
        help="What jobs may do with it (server default: both for buckets, input for http).",
    ),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="s3: https://host[:port] of the store; AWS S3 when empty."),
]
RegionOption = Annotated[
    str | None,
    typer.Option("--region", help="s3: the signing region (us-east-1 when empty, auto for R2)."),
]
BucketOption = Annotated[str | None, typer.Option("--bucket", help="s3, gcs: the bucket.")]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="s3, gcs: objects are kept under this prefix.")
]
PathStyleOption = Annotated[
    bool | None,
    typer.Option(
        "--path-style/--virtual-hosted",
        help="s3: https://host/bucket/key addressing (MinIO, SeaweedFS need it).",
        show_default=False,
    ),
]
AccessKeyIdOption = Annotated[
    str | None, typer.Option("--access-key-id", help="s3: the access key id.")
]
SecretAccessKeyStdinOption = Annotated[
    bool,
    typer.Option(
        "--secret-access-key-stdin",
        help="s3: read the secret access key from stdin (prompted for on a terminal).",
    ),
]
SecretAccessKeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--secret-access-key-env",
        metavar="VAR",
        help="s3: read the secret access key from this environment variable.",
    ),
]
ServiceAccountKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--service-account-key-file",
        help="gcs: a service-account key (JSON); the server's own credentials without it.",
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option("--base-url", help="http: an http(s) URL that input paths are appended to."),
]
HeaderNameOption = Annotated[
    str | None,
    typer.Option("--header-name", help="http: a header sent with every read (Authorization)."),
]
HeaderValueEnvOption = Annotated[
    str | None,
    typer.Option(
        "--header-value-env",
        metavar="VAR",
        help="http: read the header's value from this environment variable.",
    ),
]
HeaderValueStdinOption = Annotated[
    bool,
    typer.Option(
        "--header-value-stdin",
        help="http: read the header's value from stdin (prompted for on a terminal).",
    ),
]
PublicBaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--public-base-url",
        help="A CDN or public URL serving the bucket's objects by name, for playback URLs.",
    ),
]
