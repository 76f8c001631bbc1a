"""`kiln webhooks ...`: the organization's default URL and signing secret (WebhookService)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from kiln.v1 import webhook_service_pb2

from .client import parse
from .common import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    UrlOption,
    client_command,
    connect,
    print_json,
    stdout,
)

WEBHOOK_SERVICE = "kiln.v1.WebhookService"

app = typer.Typer(
    help="Webhook settings: get, set-url, rotate-secret. Exit codes as `kiln --help` says.",
    no_args_is_help=True,
)


def show_settings(settings: webhook_service_pb2.WebhookSettings) -> None:
    stdout.print(f"default url  {settings.default_url or '(none)'}", markup=False)
    for secret in settings.signing_secrets:
        if secret.HasField("expire_time"):
            until = secret.expire_time.ToDatetime().isoformat(timespec="seconds") + "Z"
            state = f"signing until {until}"
        else:
            state = "current"
        stdout.print(f"secret       {secret.id}  {state}", markup=False)


def _call(url: str, api_key: str | None, method: str, request: Any) -> dict[str, Any]:
    with connect(url, api_key) as client:
        return client.call(WEBHOOK_SERVICE, method, request)


@app.command()
@client_command
def get(
    url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """Show the default URL and which secrets sign (never the secrets)."""
    request = webhook_service_pb2.GetWebhookSettingsRequest()
    payload = _call(url, api_key, "GetWebhookSettings", request)
    if as_json:
        print_json(payload)
    else:
        show_settings(parse(payload, webhook_service_pb2.GetWebhookSettingsResponse).settings)


@app.command("set-url")
@client_command
def set_url(
    default_url: Annotated[
        str, typer.Argument(help="http(s) URL for jobs without a webhook_url; '' clears it.")
    ],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the organization's default webhook URL."""
    request = webhook_service_pb2.UpdateWebhookSettingsRequest(default_url=default_url)
    payload = _call(url, api_key, "UpdateWebhookSettings", request)
    if as_json:
        print_json(payload)
    else:
        show_settings(parse(payload, webhook_service_pb2.UpdateWebhookSettingsResponse).settings)


@app.command("rotate-secret")
@client_command
def rotate_secret(
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            min=0,
            help="Seconds the secrets signing until now keep signing (server default: 24 h).",
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a new signing secret; it is printed once (the last line of stdout): store it."""
    request = webhook_service_pb2.RotateWebhookSecretRequest()
    if overlap is not None:
        request.overlap_seconds = overlap
    payload = _call(url, api_key, "RotateWebhookSecret", request)
    if as_json:
        print_json(payload)
        return
    answer = parse(payload, webhook_service_pb2.RotateWebhookSecretResponse)
    show_settings(answer.settings)
    stdout.print(answer.secret, markup=False)
