"""The rules an S3 origin's location meets: its bucket name, prefix, endpoint URL and region."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_MIN_BUCKET_LENGTH = 3
_MAX_BUCKET_LENGTH = 63
# Names AWS reserves for its own access points and aliases; other stores follow AWS's rules.
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_PREFIX_BYTES = 512
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# '?' and '#' would cut a URL built from the key short; kiln's own keys never hold them.
_FORBIDDEN_IN_PREFIX = re.compile(r"[\x00-\x1f\x7f?#\\]")
_REGION = re.compile(r"[a-z0-9-]{1,32}")


def check_bucket_name(name: str) -> None:
    """S3's naming rules; ValueError names the rule broken."""
    if not _MIN_BUCKET_LENGTH <= len(name) <= _MAX_BUCKET_LENGTH:
        raise ValueError(
            f"a bucket name has {_MIN_BUCKET_LENGTH}-{_MAX_BUCKET_LENGTH} characters, "
            f"not {len(name)}"
        )
    if not _BUCKET_NAME.fullmatch(name):
        raise ValueError(
            "a bucket name has only lowercase letters, digits, '.' and '-', and starts and "
            "ends with a letter or digit"
        )
    if ".." in name:
        raise ValueError("a bucket name has no two periods in a row")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise ValueError("a bucket name cannot be an IP address")
    if name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
        raise ValueError("this bucket name uses a prefix or suffix that S3 reserves")


def check_prefix(prefix: str) -> None:
    """A folder inside the bucket: relative slash-separated names, nothing that aliases.

    The empty prefix (the bucket's top) is allowed. '.' and '..' segments would be removed by
    HTTP clients normalising a presigned URL, and empty ones make 'a//b' a different object
    from 'a/b', so either would let one name reach another's files.
    """
    if not prefix:
        return
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise ValueError(f"a prefix is at most {MAX_PREFIX_BYTES} bytes")
    if prefix.startswith("/"):
        raise ValueError("a prefix is relative to the bucket: no leading '/'")
    if bad := _FORBIDDEN_IN_PREFIX.search(prefix):
        raise ValueError(f"a prefix cannot contain {bad.group()!r}")
    if any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ValueError("a prefix has no empty, '.' or '..' segments (nor a trailing '/')")


def check_endpoint_url(url: str) -> str:
    """An S3 endpoint: http(s)://host[:port][/path], no credentials, query or fragment.

    Returns it normalised (scheme and host lowercase, no trailing '/').
    """
    if _CONTROL_CHARACTERS.search(url) or " " in url:
        raise ValueError("an endpoint URL cannot contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("an endpoint URL starts with http:// or https://")
    if not parts.hostname:
        raise ValueError("an endpoint URL names a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("an endpoint URL carries no user or password: keys are set apart")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("an endpoint URL has no query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("an endpoint URL's port is a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("an endpoint URL's port is a number from 1 to 65535")
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_region(region: str) -> None:
    if not _REGION.fullmatch(region):
        raise ValueError("a region is 1-32 lowercase letters, digits and '-' (like us-east-1)")
