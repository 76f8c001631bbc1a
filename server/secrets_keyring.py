"""The keyring that encrypts an organization's origin credentials at rest.

An origin's secret (an S3 secret access key, a GCS service-account key JSON, an HTTP header
value) is stored only as a sealed token, `v1.<key id>.<nonce>.<ciphertext and tag>`: AES-256-GCM
under the key `KILN_SECRETS_KEY` names, with a fresh random 96-bit nonce per seal. The caller's
`context` (e.g. `"origin:ori_123:org_abc"`) is authenticated with it, so a token copied into
another row or organization does not open there. The key id in the token lets the key rotate:
keys being rotated out go to `KILN_SECRETS_KEYS_PREVIOUS`, which open tokens but never seal.

Neither key material nor plaintext ever reaches a log line, an exception message or a repr:
errors name the variable and what is wrong with it, and the keyring's repr shows key ids only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.settings_env import BadSetting, comma_list

CURRENT_KEY_VARIABLE = "KILN_SECRETS_KEY"
PREVIOUS_KEYS_VARIABLE = "KILN_SECRETS_KEYS_PREVIOUS"
# Where `make run` keeps its key when KILN_SECRETS_KEY is unset (next to signing.key).
LOCAL_KEY_FILE_NAME = "secrets.key"

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is specified for
TAG_BYTES = 16
TOKEN_VERSION = "v1"

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
BASE64URL_PATTERN = re.compile(r"[A-Za-z0-9_-]*")
# Domain separation: these bytes start every token's associated data, so a GCM ciphertext
# made by anything else with the same key can never pass for a kiln secret.
ASSOCIATED_DATA_PREFIX = b"kiln-secret"

# Below this many characters a fingerprint shows nothing of the secret: the last 4 of an
# 8-character secret would give half of it away.
FINGERPRINT_MIN_LENGTH = 12
FINGERPRINT_VISIBLE_CHARACTERS = 4
FINGERPRINT_ELISION = "…"

UNREADABLE = "cannot decrypt: wrong key or altered data"


class SecretsKeyError(BadSetting):
    """A secrets key value that cannot be used. The message names the variable (or file)
    and what is wrong, never the value. A BadSetting, so `kiln` refuses to start with it
    (exit 2) the way it does for any other bad KILN_* value."""


class SecretUnreadable(Exception):
    """A sealed token that does not open with the keys loaded. `key_id` is the key id the
    token names, when it names one."""

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


@dataclass(frozen=True, eq=False)
class SecretsKey:
    """One AES-256 key and the id tokens sealed with it carry. The key bytes stay out of the
    repr, and eq=False keeps them out of accidental (non constant-time) comparisons."""

    key_id: str
    material: bytes = field(repr=False)


def _encode_base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_base64url(text: str) -> bytes | None:
    """Unpadded base64url to bytes, or None when `text` is not base64url."""
    if BASE64URL_PATTERN.fullmatch(text) is None:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_canonical_base64url(text: str) -> bytes | None:
    """Like _decode_base64url, but only the one spelling kiln writes: the unused low bits of
    the last character must be zero, so that changing any character of a token changes the
    bytes it holds (and so fails to open) instead of being silently ignored."""
    raw = _decode_base64url(text)
    if raw is None or _encode_base64url(raw) != text:
        return None
    return raw


def _check_key_id(key_id: str, where: str) -> None:
    if KEY_ID_PATTERN.fullmatch(key_id) is None:
        # The rejected id is not echoed: when the value is malformed, what stands before the
        # colon may well be part of the key.
        raise SecretsKeyError(
            f"{where}: the key id (before the ':') must be 1-32 characters, "
            "letters, digits, '-' or '_'"
        )


def parse_secrets_key(value: str, *, where: str = CURRENT_KEY_VARIABLE) -> SecretsKey:
    """`"<key id>:<32 bytes, base64url, padding optional>"` to a key. `where` names the
    variable (or file) in the error, which never contains the value."""
    text = value.strip()
    key_id, colon, encoded = text.partition(":")
    if not colon:
        raise SecretsKeyError(
            f"{where} must be '<key id>:<key>' (no ':' found); "
            "`kiln secrets new-key` prints a new one"
        )
    _check_key_id(key_id, where)
    material = _decode_base64url(encoded.rstrip("="))
    if material is None:
        hint = " (base64url spells + and / as - and _)" if any(c in encoded for c in "+/") else ""
        raise SecretsKeyError(f"{where}: the key after the ':' is not base64url{hint}")
    if len(material) != KEY_BYTES:
        raise SecretsKeyError(
            f"{where}: the key after the ':' must be {KEY_BYTES} bytes, got {len(material)}"
        )
    return SecretsKey(key_id, material)


def parse_previous_keys(value: str, *, where: str = PREVIOUS_KEYS_VARIABLE) -> list[SecretsKey]:
    """A comma-separated list of keys (blank items are skipped)."""
    return [
        parse_secrets_key(item, where=f"{where} (item {position})")
        for position, item in enumerate(comma_list(value), start=1)
    ]


def generate_secrets_key(key_id: str | None = None) -> str:
    """A new `<key id>:<key>` value for KILN_SECRETS_KEY. The default id carries the date
    (UTC) it was made, which tells an operator how old a key is, and a random suffix, so two
    keys made the same day never share an id."""
    if key_id is None:
        key_id = f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    _check_key_id(key_id, "the new key's id")
    return f"{key_id}:{_encode_base64url(secrets.token_bytes(KEY_BYTES))}"


def _associated_data(key_id: str, context: str) -> bytes:
    # The version and key id are bound too, so no part of a token can be swapped. NUL
    # separates the parts: a key id cannot contain one, so no two (key id, context) pairs
    # give the same bytes.
    return b"\0".join(
        (ASSOCIATED_DATA_PREFIX, TOKEN_VERSION.encode(), key_id.encode(), context.encode())
    )


def _check_context(context: str) -> None:
    # An empty context would let a token open in any row: that is a caller's bug.
    if not context:
        raise ValueError("a sealed secret needs a context (e.g. 'origin:<id>:<organization>')")


@dataclass(frozen=True)
class _ParsedToken:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def _parse_token(token: str) -> _ParsedToken:
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION:
        raise SecretUnreadable(f"{UNREADABLE} (not a {TOKEN_VERSION} sealed secret)")
    _, key_id, encoded_nonce, encoded_ciphertext = parts
    if KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise SecretUnreadable(f"{UNREADABLE} (no valid key id)")
    nonce = _decode_canonical_base64url(encoded_nonce)
    ciphertext = _decode_canonical_base64url(encoded_ciphertext)
    if nonce is None or len(nonce) != NONCE_BYTES or ciphertext is None:
        raise SecretUnreadable(UNREADABLE, key_id=key_id)
    if len(ciphertext) < TAG_BYTES:
        raise SecretUnreadable(UNREADABLE, key_id=key_id)
    return _ParsedToken(key_id, nonce, ciphertext)


class SecretsKeyring:
    """Seals with the current key; opens with the current key or any previous one."""

    def __init__(self, current: SecretsKey, previous: Iterable[SecretsKey] = ()) -> None:
        # Only AESGCM objects are kept: they never show their key, so neither vars() nor a
        # debugger's view of the keyring prints key material.
        self._current_key_id = current.key_id
        self._ciphers: dict[str, AESGCM] = {current.key_id: AESGCM(current.material)}
        self._previous_key_ids: list[str] = []
        seen: dict[str, bytes] = {current.key_id: current.material}
        for key in previous:
            if key.key_id in seen:
                # The same key listed twice (as happens mid-rotation) is harmless; one id
                # for two keys would make tokens ambiguous.
                if hmac.compare_digest(seen[key.key_id], key.material):
                    continue
                raise SecretsKeyError(
                    f"key id {key.key_id!r} names two different keys in "
                    f"{CURRENT_KEY_VARIABLE}/{PREVIOUS_KEYS_VARIABLE}"
                )
            seen[key.key_id] = key.material
            self._ciphers[key.key_id] = AESGCM(key.material)
            self._previous_key_ids.append(key.key_id)

    @property
    def current_key_id(self) -> str:
        return self._current_key_id

    @property
    def previous_key_ids(self) -> list[str]:
        return list(self._previous_key_ids)

    def __repr__(self) -> str:
        return (
            f"SecretsKeyring(current={self._current_key_id!r}, previous={self._previous_key_ids!r})"
        )

    def seal(self, plaintext: str, *, context: str) -> str:
        """`plaintext` encrypted with the current key, bound to `context`."""
        _check_context(context)
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            # The codec's own message quotes the offending character and the error holds the
            # whole string: neither may escape.
            raise ValueError(
                "the secret is not valid text (it has an unpaired surrogate)"
            ) from None
        nonce = secrets.token_bytes(NONCE_BYTES)
        key_id = self._current_key_id
        ciphertext = self._ciphers[key_id].encrypt(nonce, data, _associated_data(key_id, context))
        return ".".join(
            (TOKEN_VERSION, key_id, _encode_base64url(nonce), _encode_base64url(ciphertext))
        )

    def open(self, token: str, *, context: str) -> str:
        """The plaintext `token` holds, if it was sealed with a loaded key for this
        `context`; SecretUnreadable otherwise."""
        _check_context(context)
        parsed = _parse_token(token)
        cipher = self._ciphers.get(parsed.key_id)
        if cipher is None:
            raise SecretUnreadable(
                f"cannot decrypt: sealed with key id {parsed.key_id!r}, which is not loaded; "
                f"set {CURRENT_KEY_VARIABLE} or add it to {PREVIOUS_KEYS_VARIABLE}",
                key_id=parsed.key_id,
            )
        try:
            data = cipher.decrypt(
                parsed.nonce, parsed.ciphertext, _associated_data(parsed.key_id, context)
            )
            return data.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise SecretUnreadable(UNREADABLE, key_id=parsed.key_id) from None

    def reseal(self, token: str, *, context: str) -> str:
        """The same secret sealed again with the current key (rotation)."""
        return self.seal(self.open(token, context=context), context=context)

    def key_id_of(self, token: str) -> str:
        """The id of the key `token` was sealed with (SecretUnreadable if it is no token)."""
        return _parse_token(token).key_id

    def needs_rotation(self, token: str) -> bool:
        """True when `token` was sealed with a key other than the current one."""
        return self.key_id_of(token) != self._current_key_id


def fingerprint(secret: str) -> str:
    """What answers show in place of a secret: `…` and its last 4 characters, enough to tell
    two secrets apart, or only `…` for a short one. (For a JSON key the last characters say
    little; a caller may fingerprint a field of it instead, such as its private_key_id.)"""
    if len(secret) < FINGERPRINT_MIN_LENGTH:
        return FINGERPRINT_ELISION
    return FINGERPRINT_ELISION + secret[-FINGERPRINT_VISIBLE_CHARACTERS:]


def local_secrets_key(data_dir: Path) -> SecretsKey:
    """The key kept in `data_dir/secrets.key`, made on first use, so that `make run` works
    without configuration (as signing.key and webhook.secret do)."""
    path = data_dir / LOCAL_KEY_FILE_NAME
    if not path.exists():
        _create_local_key_file(path)
    # Bytes decoded leniently: a strict decode's UnicodeDecodeError would carry the file's
    # bytes, the key among them; a replaced character fails as "not base64url" instead.
    text = path.read_bytes().decode("ascii", errors="replace")
    return parse_secrets_key(text, where=f"{path} (the generated local key)")


def _create_local_key_file(path: Path) -> None:
    """Write a new key to `path` unless one appears there first.

    The key is written to a temporary file (mode 0600 from the start: mkstemp creates it
    so, and no other user can open it in between) and then linked into place. A link, not a
    rename: a rename would replace a key another process created a moment earlier and may
    already have sealed secrets with, making them unreadable; the link fails instead, and
    that process's key is used.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as temporary:
            temporary.write(generate_secrets_key() + "\n")
            temporary.flush()
            # On disk before it has a name: a key lost in a crash would leave every secret
            # sealed with it unreadable.
            os.fsync(temporary.fileno())
        try:
            os.link(temporary_name, path)
        except FileExistsError:
            return
        _sync_directory(path.parent)
    finally:
        os.unlink(temporary_name)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_keyring(env: Mapping[str, str], data_dir: Path) -> SecretsKeyring:
    """The server's keyring: KILN_SECRETS_KEY, or when it is unset or blank the local key in
    `data_dir`; plus the keys of KILN_SECRETS_KEYS_PREVIOUS. SecretsKeyError on a bad value."""
    configured = env.get(CURRENT_KEY_VARIABLE, "")
    if configured.strip():
        current = parse_secrets_key(configured, where=CURRENT_KEY_VARIABLE)
    else:
        current = local_secrets_key(data_dir)
    previous = parse_previous_keys(env.get(PREVIOUS_KEYS_VARIABLE, ""))
    return SecretsKeyring(current, previous)


__all__ = [
    "CURRENT_KEY_VARIABLE",
    "PREVIOUS_KEYS_VARIABLE",
    "SecretUnreadable",
    "SecretsKey",
    "SecretsKeyError",
    "SecretsKeyring",
    "fingerprint",
    "generate_secrets_key",
    "load_keyring",
    "local_secrets_key",
    "parse_previous_keys",
    "parse_secrets_key",
]
