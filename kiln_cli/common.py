"""What every client command shares: the server and key options, --json, exit codes and
error reporting (the Connect code and message on stderr, never a traceback)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from .client import ApiError, Client
from .download import UnsafePath
from .specs import SpecError

# Exit codes (also in docs/cli.md and `kiln --help`).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_JOB_NOT_COMPLETED = 3
EXIT_API = 4
EXIT_CODES_HELP = (
    "Exit codes: 0 success (for create --wait and watch: the job COMPLETED); "
    "2 usage error (bad flag, --output shorthand or spec file); "
    "3 the job ended REJECTED, FAILED, CANCELED or PARTIAL; "
    "4 connection or API error (the Connect code and message go to stderr)."
)
DEFAULT_URL = "http://127.0.0.1:8080"

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="KILN_URL",
        show_envvar=True,
        help="HTTP base URL of the kiln server (Connect JSON).",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="KILN_API_KEY",
        show_envvar=True,
        show_default=False,
        help="API key (kiln_sk_...).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the Connect JSON answer (watch: one event a line).")
]


def fail(code: int, text: str) -> NoReturn:
    stderr.print(f"kiln: {text}", markup=False)
    raise typer.Exit(code)


def connect(url: str, api_key: str | None) -> Client:
    if not api_key:
        fail(EXIT_USAGE, "usage error: no API key: pass --api-key or set KILN_API_KEY")
    if not url.startswith(("http://", "https://")):
        fail(EXIT_USAGE, f"usage error: --url {url!r} is not an http(s) URL")
    return Client(url, api_key)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def json_line(document: Any) -> None:
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


P = ParamSpec("P")
R = TypeVar("R")


def client_command(function: Callable[P, R]) -> Callable[P, R]:
    """Turns the CLI's own errors into their exit codes and one line on stderr."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except SpecError as error:
            fail(EXIT_USAGE, f"usage error: {error}")
        except ApiError as error:
            fail(EXIT_API, f"error: {error.code}: {error.message}")
        except UnsafePath as error:
            fail(EXIT_API, f"error: refused: {error}")
        except KeyboardInterrupt:
            fail(130, "interrupted")

    return run
