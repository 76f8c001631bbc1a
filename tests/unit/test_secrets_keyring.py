"""server/secrets_keyring.py: origin credentials sealed with AES-GCM under KILN_SECRETS_KEY.

A token opens only with a loaded key and the context it was sealed for; any change to it
fails; a bad key value is refused naming the variable, never showing the value; and no key
material or plaintext reaches a message, a log record or a repr.
"""

from __future__ import annotations

import base64
import logging
import re
import stat
from pathlib import Path

import pytest

from common.settings_env import BadSetting
from server.secrets_keyring import (
    CURRENT_KEY_VARIABLE,
    PREVIOUS_KEYS_VARIABLE,
    SecretsKey,
    SecretsKeyError,
    SecretsKeyring,
    SecretUnreadable,
    fingerprint,
    generate_secrets_key,
    load_keyring,
    parse_secrets_key,
)

CONTEXT = "origin:ori_123:org_abc"
PLAINTEXT = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
UNREADABLE = "cannot decrypt: wrong key or altered data"
BASE64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_value(key_id: str, fill: int) -> str:
    """A KILN_SECRETS_KEY value with recognisable key bytes."""
    return f"{key_id}:{b64url(bytes([fill]) * 32)}"


CURRENT = key_value("k2", 0x22)
PREVIOUS = key_value("k1", 0x11)


def keyring(current: str = CURRENT, *previous: str) -> SecretsKeyring:
    return SecretsKeyring(parse_secrets_key(current), [parse_secrets_key(p) for p in previous])


def with_part(token: str, index: int, new_part: str) -> str:
    parts = token.split(".")
    parts[index] = new_part
    return ".".join(parts)


def other_character(character: str) -> str:
    return "A" if character != "A" else "B"


# Round trip and the token's shape


@pytest.mark.parametrize(
    "plaintext",
    [
        PLAINTEXT,
        "",
        "Bearer é✓ 🔑",
        '{"type": "service_account",\n "private_key": "-----BEGIN PRIVATE KEY-----\\n…"}',
        "x" * 100_000,
    ],
)
def test_a_sealed_secret_opens_to_itself(plaintext: str) -> None:
    ring = keyring()
    assert ring.open(ring.seal(plaintext, context=CONTEXT), context=CONTEXT) == plaintext


def test_a_token_is_version_key_id_nonce_and_ciphertext() -> None:
    token = keyring().seal(PLAINTEXT, context=CONTEXT)
    version, key_id, nonce, ciphertext = token.split(".")
    assert (version, key_id) == ("v1", "k2")
    assert len(base64.urlsafe_b64decode(nonce + "==")) == 12
    # AES-GCM: as long as the plaintext, plus the 16-byte tag.
    assert len(base64.urlsafe_b64decode(ciphertext + "==")) == len(PLAINTEXT) + 16
    assert PLAINTEXT not in token
    assert set(nonce + ciphertext) <= set(BASE64URL_ALPHABET)


def test_every_seal_uses_a_new_nonce() -> None:
    ring = keyring()
    tokens = [ring.seal(PLAINTEXT, context=CONTEXT) for _ in range(50)]
    assert len({token.split(".")[2] for token in tokens}) == 50
    assert len(set(tokens)) == 50


def test_a_context_is_required() -> None:
    ring = keyring()
    with pytest.raises(ValueError, match="context"):
        ring.seal(PLAINTEXT, context="")
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    with pytest.raises(ValueError, match="context"):
        ring.open(token, context="")


# What does not open


@pytest.mark.parametrize(
    "other_context",
    ["origin:ori_123:org_other", "origin:ori_456:org_abc", "origin:ori_123:org_abc ", "x"],
)
def test_a_token_does_not_open_in_another_context(other_context: str) -> None:
    ring = keyring()
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretUnreadable, match=UNREADABLE) as refused:
        ring.open(token, context=other_context)
    assert refused.value.key_id == "k2"


@pytest.mark.parametrize("part", [0, 1, 2, 3], ids=["version", "key-id", "nonce", "ciphertext"])
def test_a_byte_flipped_in_any_part_fails(part: int) -> None:
    ring = keyring()
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    text = token.split(".")[part]
    if part >= 2:
        raw = bytearray(base64.urlsafe_b64decode(text + "=="))
        for position in (0, len(raw) // 2, len(raw) - 1):
            flipped = bytearray(raw)
            flipped[position] ^= 0x01
            with pytest.raises(SecretUnreadable, match=UNREADABLE):
                ring.open(with_part(token, part, b64url(bytes(flipped))), context=CONTEXT)
    else:
        flipped_text = chr(ord(text[0]) ^ 0x01) + text[1:]
        with pytest.raises(SecretUnreadable, match="cannot decrypt"):
            ring.open(with_part(token, part, flipped_text), context=CONTEXT)


def test_changing_any_character_of_a_token_fails() -> None:
    # Every position, including the last character of each base64 part, whose low bits are
    # unused: a decoder that ignored them would open a token that was changed.
    ring = keyring()
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    for position, character in enumerate(token):
        changed = token[:position] + other_character(character) + token[position + 1 :]
        with pytest.raises(SecretUnreadable, match="cannot decrypt"):
            ring.open(changed, context=CONTEXT)


def test_a_token_whose_key_id_was_swapped_fails_even_with_the_same_key_bytes() -> None:
    # The key id is authenticated with the ciphertext.
    same_bytes = "other:" + CURRENT.partition(":")[2]
    ring = keyring(CURRENT, same_bytes)
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretUnreadable, match=UNREADABLE):
        ring.open(with_part(token, 1, "other"), context=CONTEXT)


def test_a_truncated_token_fails() -> None:
    ring = keyring()
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    version, key_id, nonce, ciphertext = token.split(".")
    truncated = [
        token[:-1],
        token[:-4],
        f"{version}.{key_id}.{nonce}.{ciphertext[:20]}",  # shorter than a tag
        f"{version}.{key_id}.{nonce}.",
        f"{version}.{key_id}.{nonce}",
        f"{version}.{key_id}.{nonce[:-1]}.{ciphertext}",
        f"{version}.{key_id}",
        "v1",
        "",
        PLAINTEXT,
        token + ".",
    ]
    for bad in truncated:
        with pytest.raises(SecretUnreadable, match=UNREADABLE):
            ring.open(bad, context=CONTEXT)


def test_an_unknown_key_id_is_named_with_the_variables_to_set() -> None:
    token = keyring(key_value("gone", 0x33)).seal(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretUnreadable) as refused:
        keyring().open(token, context=CONTEXT)
    message = str(refused.value)
    assert "'gone'" in message
    assert CURRENT_KEY_VARIABLE in message
    assert PREVIOUS_KEYS_VARIABLE in message
    assert refused.value.key_id == "gone"


def test_a_key_with_the_same_id_but_other_bytes_does_not_open() -> None:
    token = keyring(key_value("k2", 0x44)).seal(PLAINTEXT, context=CONTEXT)
    with pytest.raises(SecretUnreadable, match=UNREADABLE):
        keyring().open(token, context=CONTEXT)


# Rotation


def test_a_previous_key_opens_and_its_tokens_need_rotation() -> None:
    old_token = keyring(PREVIOUS).seal(PLAINTEXT, context=CONTEXT)
    ring = keyring(CURRENT, PREVIOUS)
    assert ring.open(old_token, context=CONTEXT) == PLAINTEXT
    assert ring.key_id_of(old_token) == "k1"
    assert ring.needs_rotation(old_token)

    new_token = ring.seal(PLAINTEXT, context=CONTEXT)
    assert ring.key_id_of(new_token) == ring.current_key_id == "k2"
    assert not ring.needs_rotation(new_token)


def test_a_previous_key_never_seals() -> None:
    ring = keyring(CURRENT, PREVIOUS)
    assert {ring.key_id_of(ring.seal(PLAINTEXT, context=CONTEXT)) for _ in range(20)} == {"k2"}


def test_reseal_moves_a_token_to_the_current_key() -> None:
    old_token = keyring(PREVIOUS).seal(PLAINTEXT, context=CONTEXT)
    ring = keyring(CURRENT, PREVIOUS)
    resealed = ring.reseal(old_token, context=CONTEXT)
    assert not ring.needs_rotation(resealed)
    assert keyring(CURRENT).open(resealed, context=CONTEXT) == PLAINTEXT


def test_a_token_sealed_with_a_dropped_key_fails() -> None:
    old_token = keyring(PREVIOUS).seal(PLAINTEXT, context=CONTEXT)
    assert keyring(CURRENT, PREVIOUS).open(old_token, context=CONTEXT) == PLAINTEXT
    with pytest.raises(SecretUnreadable, match="'k1'"):
        keyring(CURRENT).open(old_token, context=CONTEXT)


def test_the_same_key_listed_twice_is_accepted() -> None:
    ring = keyring(CURRENT, PREVIOUS, PREVIOUS, CURRENT)
    assert ring.previous_key_ids == ["k1"]


def test_one_key_id_for_two_keys_is_refused() -> None:
    with pytest.raises(SecretsKeyError, match="'k2' names two different keys"):
        keyring(CURRENT, key_value("k2", 0x55))
    with pytest.raises(SecretsKeyError, match="'k1' names two different keys"):
        keyring(CURRENT, PREVIOUS, key_value("k1", 0x55))


def test_key_id_of_a_malformed_token_is_unreadable() -> None:
    with pytest.raises(SecretUnreadable):
        keyring().key_id_of("not a token")
    with pytest.raises(SecretUnreadable):
        keyring().needs_rotation("v2.k2.AAAA.AAAA")


# Key values in the environment

GOOD_KEY = b64url(bytes(range(32)))
# 32 bytes whose standard base64 has + and /, for the hint.
STANDARD_BASE64_KEY = base64.b64encode(b"\xfb\xff" * 16).decode()

BAD_VALUES = {
    "missing colon": GOOD_KEY,
    "empty key id": ":" + GOOD_KEY,
    "key id with a space": "my key:" + GOOD_KEY,
    "key id with a dot": "k.1:" + GOOD_KEY,
    "key id too long": "k" * 33 + ":" + GOOD_KEY,
    "key id not ASCII": "clé:" + GOOD_KEY,
    "NUL in the key id": "k\x001:" + GOOD_KEY,
    "not base64": "k1:this is not base64!!",
    "standard base64": "k1:" + STANDARD_BASE64_KEY,
    "padding in the middle": "k1:" + GOOD_KEY[:20] + "=" + GOOD_KEY[20:],
    "empty key": "k1:",
    "16 bytes": "k1:" + b64url(bytes(range(16))),
    "31 bytes": "k1:" + b64url(bytes(range(31))),
    "33 bytes": "k1:" + b64url(bytes(range(33))),
    "one character too many": "k1:" + GOOD_KEY + "A",
    "NUL in the key": "k1:" + GOOD_KEY[:10] + "\x00" + GOOD_KEY[10:],
    "second colon": "k1:" + GOOD_KEY[:10] + ":" + GOOD_KEY[10:],
}


def assert_names_the_variable_not_the_value(error: Exception, variable: str, value: str) -> None:
    message = str(error)
    assert variable in message
    assert value.strip() not in message
    key_id, _, key_text = value.partition(":")
    # Neither the key text nor (when the value is malformed) what stands before the colon.
    for fragment in (key_text, key_id, GOOD_KEY[:8], STANDARD_BASE64_KEY[:8]):
        if len(fragment) >= 4:
            assert fragment not in message, (fragment, message)
    assert "\x00" not in message


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_current_key_is_refused_naming_the_variable_only(value: str, tmp_path: Path) -> None:
    with pytest.raises(SecretsKeyError) as refused:
        load_keyring({CURRENT_KEY_VARIABLE: value}, tmp_path)
    assert_names_the_variable_not_the_value(refused.value, CURRENT_KEY_VARIABLE, value)
    assert not (tmp_path / "secrets.key").exists()


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_previous_key_is_refused_naming_the_variable_and_item(
    value: str, tmp_path: Path
) -> None:
    if "," in value:
        pytest.skip("a comma splits the list")
    env = {CURRENT_KEY_VARIABLE: CURRENT, PREVIOUS_KEYS_VARIABLE: f"{PREVIOUS},{value}"}
    with pytest.raises(SecretsKeyError) as refused:
        load_keyring(env, tmp_path)
    assert_names_the_variable_not_the_value(refused.value, PREVIOUS_KEYS_VARIABLE, value)
    assert "(item 2)" in str(refused.value)


def test_the_errors_say_what_is_wrong() -> None:
    cases = {
        BAD_VALUES["missing colon"]: "no ':' found",
        BAD_VALUES["key id too long"]: "1-32 characters",
        BAD_VALUES["not base64"]: "not base64url",
        BAD_VALUES["standard base64"]: "spells + and / as - and _",
        BAD_VALUES["16 bytes"]: "must be 32 bytes, got 16",
        BAD_VALUES["31 bytes"]: "must be 32 bytes, got 31",
        BAD_VALUES["33 bytes"]: "must be 32 bytes, got 33",
    }
    for value, reason in cases.items():
        with pytest.raises(SecretsKeyError, match=re.escape(reason)):
            parse_secrets_key(value)


def test_a_secrets_key_error_is_a_bad_setting() -> None:
    # `kiln` turns a BadSetting into "refusing to start" and exit code 2.
    assert issubclass(SecretsKeyError, BadSetting)
    assert issubclass(SecretsKeyError, ValueError)


@pytest.mark.parametrize(
    "value",
    [
        f"k1:{GOOD_KEY}",
        f"k1:{GOOD_KEY}=",  # padded
        f"  k1:{GOOD_KEY}\n",  # as read from a file
        f"{'K' * 32}:{GOOD_KEY}",
        f"a-b_C9:{GOOD_KEY}",
    ],
)
def test_good_key_values_are_read(value: str) -> None:
    key = parse_secrets_key(value)
    assert key.key_id == value.strip().partition(":")[0]
    assert key.material == bytes(range(32))


def test_previous_keys_are_a_comma_separated_list(tmp_path: Path) -> None:
    env = {
        CURRENT_KEY_VARIABLE: CURRENT,
        PREVIOUS_KEYS_VARIABLE: f" {PREVIOUS} ,, {key_value('k0', 0x00)} ,",
    }
    ring = load_keyring(env, tmp_path)
    assert ring.current_key_id == "k2"
    assert ring.previous_key_ids == ["k1", "k0"]


def test_a_generated_key_is_a_valid_value() -> None:
    value = generate_secrets_key()
    key = parse_secrets_key(value)
    assert len(key.material) == 32
    assert generate_secrets_key() != value
    assert parse_secrets_key(generate_secrets_key("prod-2025")).key_id == "prod-2025"
    with pytest.raises(SecretsKeyError, match="key id"):
        generate_secrets_key("bad id")


def test_generated_default_key_ids_differ() -> None:
    key_ids = {parse_secrets_key(generate_secrets_key()).key_id for _ in range(20)}
    assert len(key_ids) == 20


# The local key of `make run`


def test_without_a_configured_key_a_local_key_is_made_once_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = load_keyring({}, data_dir)
    key_file = data_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(path.name for path in data_dir.iterdir()) == ["secrets.key"]  # no temp file
    token = first.seal(PLAINTEXT, context=CONTEXT)

    contents = key_file.read_text()
    second = load_keyring({CURRENT_KEY_VARIABLE: "  "}, data_dir)
    assert key_file.read_text() == contents
    assert second.current_key_id == first.current_key_id
    assert second.open(token, context=CONTEXT) == PLAINTEXT


def test_a_configured_key_wins_and_makes_no_file(tmp_path: Path) -> None:
    ring = load_keyring({CURRENT_KEY_VARIABLE: CURRENT}, tmp_path)
    assert ring.current_key_id == "k2"
    assert not (tmp_path / "secrets.key").exists()


def test_the_local_key_moves_to_previous_when_a_key_is_configured(tmp_path: Path) -> None:
    local = load_keyring({}, tmp_path)
    token = local.seal(PLAINTEXT, context=CONTEXT)
    local_value = (tmp_path / "secrets.key").read_text().strip()
    env = {CURRENT_KEY_VARIABLE: CURRENT, PREVIOUS_KEYS_VARIABLE: local_value}
    configured = load_keyring(env, tmp_path)
    assert configured.needs_rotation(token)
    assert configured.open(token, context=CONTEXT) == PLAINTEXT


def test_an_existing_local_key_file_is_used_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_text(PREVIOUS + "\n")
    assert load_keyring({}, tmp_path).current_key_id == "k1"
    assert (tmp_path / "secrets.key").read_text() == PREVIOUS + "\n"


def test_a_damaged_local_key_file_is_refused_without_its_contents(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets.key"
    damaged = b"k1:" + GOOD_KEY[:20].encode() + b"\xff\xfe"
    key_file.write_bytes(damaged)
    with pytest.raises(SecretsKeyError) as refused:
        load_keyring({}, tmp_path)
    message = str(refused.value)
    assert str(key_file) in message
    assert GOOD_KEY[:8] not in message
    assert refused.value.__cause__ is None


# Fingerprints


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("", "…"),
        ("abc", "…"),
        ("8charsAB", "…"),
        ("elevenchars", "…"),
        ("twelve_chars", "…hars"),
        (PLAINTEXT, "…EKEY"),
        ("x-api-key: sk_live_0123456789abcdef", "…cdef"),
    ],
)
def test_a_fingerprint_shows_the_last_four_characters_of_a_long_secret(
    secret: str, shown: str
) -> None:
    assert fingerprint(secret) == shown


# Nothing leaks


def material_spellings(value: str) -> list[str]:
    raw = parse_secrets_key(value).material
    return [value.partition(":")[2], raw.hex(), repr(raw), str(list(raw)), b64url(raw)[:10]]


def test_reprs_show_key_ids_only() -> None:
    ring = keyring(CURRENT, PREVIOUS)
    ring.open(ring.seal(PLAINTEXT, context=CONTEXT), context=CONTEXT)
    shown = [repr(ring), str(ring), repr(vars(ring)), repr(parse_secrets_key(CURRENT))]
    assert repr(ring) == "SecretsKeyring(current='k2', previous=['k1'])"
    assert repr(parse_secrets_key(CURRENT)) == "SecretsKey(key_id='k2')"
    for text in shown:
        for spelling in [*material_spellings(CURRENT), *material_spellings(PREVIOUS), PLAINTEXT]:
            assert spelling not in text


def test_failures_carry_no_plaintext_or_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ring = keyring(CURRENT, PREVIOUS)
    token = ring.seal(PLAINTEXT, context=CONTEXT)
    failures: list[BaseException] = []
    for attempt in (
        lambda: ring.open(token, context="origin:other"),
        lambda: ring.open(token[:-2], context=CONTEXT),
        lambda: keyring(key_value("k9", 0x99)).open(token, context=CONTEXT),
        lambda: ring.seal(PLAINTEXT + "\ud800", context=CONTEXT),
    ):
        with pytest.raises((SecretUnreadable, ValueError)) as refused:
            attempt()
        failures.append(refused.value)
    forbidden = [*material_spellings(CURRENT), PLAINTEXT, "\ud800", token.split(".")[3][:12]]
    for failure in failures:
        # Nothing chained either (`from None`): a traceback would show the causes' messages.
        assert failure.__cause__ is None
        assert failure.__context__ is None or failure.__suppress_context__
        for text in (str(failure), repr(failure), repr(failure.args)):
            for spelling in forbidden:
                assert spelling not in text
    assert not caplog.records


def test_a_key_object_does_not_compare_its_bytes() -> None:
    # Equality would compare key bytes in non-constant time; identity is all it offers.
    first, second = parse_secrets_key(CURRENT), parse_secrets_key(CURRENT)
    assert first != second
    assert isinstance(first, SecretsKey)
