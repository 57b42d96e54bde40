"""The hub's shared-run fan-out (messaging/realtime/fanout.py) sends every socket exactly
what the event-by-event path would: the same frames in the same order, the same count,
the same cursor, the same tracked conversations afterwards."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.realtime.delivery import Viewer, frames_for
from messaging.realtime.fanout import Flush
from messaging.realtime.wire import Frame, FrameRun, Wire
from teams import ids

MEMBERS = [101, 102, 103, 104]
EVENT_KINDS = [
    *("message", "message", "message", "dm", "team", "join", "leave", "revoked"),
    *("profile", "deactivated", "created", "group_joined", "both"),
]
CHANNELS = [11, 12, 13]


class FakeWire:
    def __init__(self) -> None:
        self.sent = b""

    def write_joined(self, data: bytes, frames: list[Frame]) -> None:
        assert data == _wire(frames)
        self.sent += data


@dataclass
class FakeSocket:
    cursor: int
    viewer: Viewer
    reconnect_url_sent: float = 0.0
    wire: FakeWire = field(default_factory=FakeWire)

    def write(self, frames: list[Frame]) -> None:
        self.wire.sent += _wire(frames)


def _event(kind: str, member: int, channel: int, audience: list[int]) -> dict[str, Any]:
    user = ids.encode(ids.USER, member)
    slack_channel = ids.encode(ids.PUBLIC, channel)
    if kind == "message":
        return {
            "event": {"type": "message", "channel": slack_channel, "user": user, "text": "hi"},
            "channel_id": channel,
        }
    if kind == "dm":  # a private event by audience (no conversation of the viewer's)
        return {
            "event": {"type": "message", "channel": "D1", "user": user, "text": "psst"},
            "audience": audience,
        }
    if kind == "team":  # team-wide: neither conversation nor audience
        return {"event": {"type": "emoji_changed", "subtype": "add", "name": f"e{member}"}}
    if kind == "revoked":
        return {"event": {"type": "tokens_revoked"}, "audience": [member]}
    if kind == "profile":  # team-wide, changes nothing about who sees what
        return {"event": {"type": "user_change", "user": {"id": user, "deleted": False}}}
    if kind == "deactivated":
        return {"event": {"type": "user_change", "user": {"id": user, "deleted": True}}}
    if kind == "created":  # the creator's new channel
        created = {"id": slack_channel, "creator": user}
        return {"event": {"type": "channel_created", "channel": created}, "channel_id": channel}
    if kind == "group_joined":  # a private channel joined, announced by audience
        joined = {"id": ids.encode(ids.PRIVATE, channel)}
        return {"event": {"type": "group_joined", "channel": joined}, "audience": audience}
    if kind == "both":  # a conversation's event that also names an audience
        payload = {"type": "message", "channel": slack_channel, "user": user, "text": "both"}
        return {"event": payload, "channel_id": channel, "audience": audience}
    verb = "member_joined_channel" if kind == "join" else "member_left_channel"
    return {"event": {"type": verb, "channel": slack_channel, "user": user}, "channel_id": channel}


event_specs = st.lists(
    st.tuples(
        st.sampled_from(EVENT_KINDS),
        st.sampled_from(MEMBERS),
        st.sampled_from(CHANNELS),
        st.lists(st.sampled_from(MEMBERS), max_size=3),
    ),
    min_size=1,
    max_size=12,
)
socket_specs = st.lists(
    st.tuples(st.sampled_from(MEMBERS), st.sets(st.sampled_from(CHANNELS)), st.integers(0, 14)),
    min_size=1,
    max_size=6,
)


def _wire(frames: list[Frame]) -> bytes:
    return b"".join(frame.wire for frame in frames)


@settings(max_examples=300, deadline=None)
@given(events=event_specs, sockets=socket_specs)
def test_shared_runs_match_event_by_event_delivery(
    events: list[tuple[Any, ...]], sockets: list[tuple[Any, ...]]
) -> None:
    messages = []
    for event_id, (kind, member, channel, audience) in enumerate(events, start=1):
        message = _event(kind, member, channel, audience)
        message["type"] = "team.event"
        message["event_id"] = event_id
        messages.append(message)
    flush = Flush(messages)
    for member, channels, cursor in sockets:
        general = FakeSocket(cursor, Viewer(member, set(channels)))
        shared = FakeSocket(cursor, Viewer(member, set(channels)))
        want_frames, want_count, want_ended = frames_for(general, messages)
        got_frames, got_count, got_ended = flush.frames_for(shared)
        assert _wire(got_frames) == _wire(want_frames)
        assert (got_count, got_ended, shared.cursor) == (want_count, want_ended, general.cursor)
        assert shared.viewer.channel_ids == general.viewer.channel_ids


@settings(max_examples=300, deadline=None)
@given(
    channel=st.sampled_from(CHANNELS),
    count=st.integers(1, 5),
    sockets=socket_specs,
    kind=st.sampled_from(["message", "message", *EVENT_KINDS]),
)
def test_a_flush_writes_each_socket_what_event_by_event_delivery_would(
    channel: int, count: int, sockets: list[tuple[Any, ...]], kind: str
) -> None:
    """Flush.write_to, whose loop skips the per-socket calls for the common flush (every
    event in one conversation), and takes the general path for any other flush or a socket
    whose cursor is inside the flush."""
    messages = [_event("message", MEMBERS[0], channel, []) for _ in range(count)]
    messages.append(_event(kind, MEMBERS[1], channel, [MEMBERS[2]]))
    for event_id, message in enumerate(messages, start=5):
        message.update(type="team.event", event_id=event_id)
    shared = [FakeSocket(cursor, Viewer(member, set(channels))) for member, channels, cursor in sockets]
    delivered, ended = Flush(messages).write_to(shared)
    want_delivered = 0
    for (member, channels, cursor), got in zip(sockets, shared, strict=True):
        general = FakeSocket(cursor, Viewer(member, set(channels)))
        frames, want_count, want_ended = frames_for(general, messages)
        want_delivered += want_count
        assert got.wire.sent == _wire(frames)
        assert (got.cursor, got.viewer.channel_ids) == (general.cursor, general.viewer.channel_ids)
        assert any(sock is got for sock in ended) == want_ended
    assert delivered == want_delivered


def test_sockets_that_see_the_same_events_share_one_joined_run() -> None:
    messages = [
        {"type": "team.event", "event_id": n, "channel_id": 11, "event": {"type": "message", "text": str(n)}}
        for n in (5, 6, 7)
    ]
    flush = Flush(messages)
    first, _, _ = flush.frames_for(FakeSocket(4, Viewer(101, {11})))
    second, count, _ = flush.frames_for(FakeSocket(4, Viewer(102, {11, 12})))
    outside, none, _ = flush.frames_for(FakeSocket(4, Viewer(103, {12})))
    assert len(first) == 1 and first[0] is second[0]  # joined once, for both
    assert count == 3 and b'"text": "7"' in first[0].wire
    assert outside == [] and none == 0


def test_a_run_goes_out_frame_by_frame_where_no_daphne_protocol_is_at_hand() -> None:
    """Under another ASGI server (or Channels' test communicator) frames go through the
    consumer's ordinary send, one message each: a run must not become one empty frame."""
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    async def write() -> None:
        Wire(send_text, send_text).write([FrameRun([Frame("one"), Frame("two")]), Frame("three")])
        await asyncio.sleep(0)

    asyncio.run(write())
    assert sent == ["one", "two", "three"]


class _Transport:
    """What Wire reads of a Twisted TCP transport, recording what goes where."""

    def __init__(self, buffered: bytes = b"") -> None:
        self.dataBuffer = b""
        self._tempDataBuffer = [buffered] if buffered else []
        self._tempDataLen = len(buffered)
        self.connected = True
        self.sent: list[bytes] = []  # straight to the socket
        self.queued: list[bytes] = []  # handed to Twisted's buffer
        self.socket = self  # whose send records into `sent`

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def write(self, data: bytes) -> None:
        self.queued.append(data)


class _Protocol:
    STATE_OPEN = 3

    def __init__(self, compressing: bool = False) -> None:
        self.state = self.STATE_OPEN
        self._perMessageCompress = object() if compressing else None
        self.send_queue: list[Any] = []
        self.prepared: list[bytes] = []

    def sendPreparedMessage(self, prepared: Any) -> None:
        self.prepared.append(prepared.payloadHybi)


def _daphne_wire(protocol: _Protocol, transport: _Transport) -> Wire:
    wire = Wire(None, None)
    wire._protocol, wire._tcp, wire._send = protocol, transport, transport.send
    return wire


def test_a_joined_write_takes_the_socket_only_when_nothing_is_held_before_it() -> None:
    """Wire.write_joined sends straight to the socket only in the common case; anything
    else keeps write's order: behind bytes Twisted holds, inside a cork, frame by frame
    to a compressing socket, nothing to a closing one."""
    frames = [FrameRun([Frame("one"), Frame("two")])]
    data = frames[0].wire

    clean = _Transport()
    _daphne_wire(_Protocol(), clean).write_joined(data, frames)
    assert (clean.sent, clean.queued) == ([data], [])

    behind = _Transport(buffered=b"earlier")
    _daphne_wire(_Protocol(), behind).write_joined(data, frames)
    assert (behind.sent, behind.queued) == ([], [data])  # after what Twisted holds

    corked_transport = _Transport()
    corked = _daphne_wire(_Protocol(), corked_transport)
    with corked.corked():
        corked.write_joined(data, frames)
        assert corked_transport.sent == []
    assert corked_transport.sent == [data]

    compressing = _Protocol(compressing=True)
    _daphne_wire(compressing, _Transport()).write_joined(data, frames)
    assert compressing.prepared == [Frame("one").wire, Frame("two").wire]

    closing, closing_transport = _Protocol(), _Transport()
    closing.state = 4
    _daphne_wire(closing, closing_transport).write_joined(data, frames)
    assert (closing_transport.sent, closing_transport.queued) == ([], [])
