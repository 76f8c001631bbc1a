"""Task.encryption as the worker's OutputEncryption: the keys as sent, and the server's
mistakes refused with the field that is wrong."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.content_keys import EncryptionScheme
from worker.media.errors import OUTPUT_SPEC_UNSUPPORTED, OutputSpecError
from worker.tasks.task_keys import task_encryption

KEY_ID, KEY = bytes(range(16)), bytes(range(16, 32))
LATER_ID, LATER = bytes(range(32, 48)), bytes(range(48, 64))


def test_a_clear_output_has_no_encryption():
    assert task_encryption(wpb.Task()) is None


def test_keys_and_rotation_are_taken_as_sent():
    task = wpb.Task(
        encryption=wpb.TaskEncryption(
            scheme=job_pb2.ENCRYPTION_SCHEME_AES_128,
            rotate_every_segments=2,
            keys=[
                wpb.ContentKey(key_id=KEY_ID, key=KEY, uri="https://k/1", first_segment=0),
                wpb.ContentKey(key_id=LATER_ID, key=LATER, uri="https://k/2", first_segment=2),
            ],
        )
    )
    encryption = task_encryption(task)
    assert encryption is not None
    assert encryption.scheme == EncryptionScheme.AES_128
    assert encryption.rotate_every_segments == 2
    assert [(k.key_id, k.key, k.uri, k.first_segment) for k in encryption.keys] == [
        (KEY_ID, KEY, "https://k/1", 0),
        (LATER_ID, LATER, "https://k/2", 2),
    ]
    assert KEY.hex() not in repr(encryption) and LATER.hex() not in repr(encryption)


def test_a_short_key_or_no_scheme_is_refused_naming_the_field():
    short = wpb.Task(
        encryption=wpb.TaskEncryption(
            scheme=job_pb2.ENCRYPTION_SCHEME_CENC,
            keys=[wpb.ContentKey(key_id=KEY_ID, key=KEY[:15])],
        )
    )
    with pytest.raises(OutputSpecError, match=r"encryption.keys\[0\]: .*16 bytes") as raised:
        task_encryption(short)
    assert raised.value.code == OUTPUT_SPEC_UNSUPPORTED
    no_scheme = wpb.Task(
        encryption=wpb.TaskEncryption(keys=[wpb.ContentKey(key_id=KEY_ID, key=KEY)])
    )
    with pytest.raises(OutputSpecError, match=r"encryption\.scheme"):
        task_encryption(no_scheme)
