"""Watch events shared by every stream of a job are encoded once for all of them."""

from __future__ import annotations

from kiln.v1 import job_service_pb2 as pb

from server.api.grpc_adapter import SerializeOnce


def test_the_same_event_object_is_encoded_once_and_equal_events_stay_distinct():
    serialize = SerializeOnce(size=2)
    event = pb.WatchResponse(sequence=3, progress=pb.ProgressEvent(progress=40.0))
    first = serialize(event)
    assert first == event.SerializeToString()
    assert serialize(event) is first  # the second stream gets the same bytes, not a re-encoding
    # Another object is encoded for itself, even when the first one changed afterwards.
    other = pb.WatchResponse(sequence=4, progress=pb.ProgressEvent(progress=41.0))
    assert pb.WatchResponse.FromString(serialize(other)).sequence == 4


def test_per_stream_messages_are_not_kept():
    serialize = SerializeOnce(size=2)
    for n in range(5):
        beat = pb.WatchResponse(sequence=n, heartbeat=pb.HeartbeatEvent())
        assert pb.WatchResponse.FromString(serialize(beat)).sequence == n
    assert not serialize._encoded
