"""A team moves between shards while its members post through the API and listen on real
sockets (two daphne processes): nothing is lost, nothing arrives twice, and afterwards the
team lives only on the new shard."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from teams.directory import team_entry
from teams.models import Team, TeamMove
from teams.moves import move_team_to_shard
from tests.conftest import World, without_joins
from tests.rtm_client import RtmSocket, web
from tests.servers import running_daphne
from tests.test_moves import team_rows

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

POST_GAP_SECS = 0.01


def _wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)


@pytest.fixture(scope="module")
def daphnes(django_db_setup, django_db_blocker):
    with running_daphne() as first, running_daphne() as second:
        yield first, second


class Poster(threading.Thread):
    """Posts until told to stop, retrying a refused post with the same client_msg_id."""

    def __init__(self, server: Any, token: str, channel: str, who: str) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.channel, self.who = server, token, channel, who
        self.posted: list[str] = []
        self.refusals = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client = web(self.server, self.token)
        n = 0
        while not self.stop.is_set():
            n += 1
            text, msg_id = f"{self.who} {n}", str(uuid.uuid4())
            while True:
                try:
                    client.chat_postMessage(channel=self.channel, text=text, client_msg_id=msg_id)
                    break
                except SlackApiError as exc:
                    if exc.response["error"] != "team_is_moving":
                        self.failures.append(f"{text}: {exc.response['error']}")
                        return
                    self.refusals += 1  # retryable: the same client_msg_id again, after a beat
                    time.sleep(float(exc.response.headers.get("Retry-After", "1")) / 10)
            self.posted.append(text)
            time.sleep(POST_GAP_SECS)


class Listener(threading.Thread):
    """A client that reconnects on goodbye with `since=` its last event id, as Slack's do."""

    def __init__(self, server: Any, token: str) -> None:
        super().__init__(daemon=True)
        self.server, self.token = server, token
        self.cursor: int | None = None
        self.texts: list[str] = []
        self.event_ids: list[int] = []
        self.goodbyes = 0
        self.connects = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def _connect(self) -> RtmSocket:
        while True:
            try:
                url = web(self.server, self.token).rtm_connect()["url"]
                break
            except SlackApiError as exc:
                assert exc.response["error"] == "team_is_moving", exc.response
                time.sleep(0.05)
        if self.cursor is not None:
            url = f"{url.split('&since=')[0]}&since={self.cursor}"
        self.connects += 1
        return RtmSocket(url)

    def run(self) -> None:
        while not self.stop.is_set():
            socket = self._connect()
            while not self.stop.is_set():
                frame = socket.recv(timeout=0.2)
                if frame is None:
                    if socket.closed_code is not None or getattr(socket.connection, "close_code", None):
                        break
                    continue
                if frame.get("type") == "hello":
                    self.ready.set()
                if frame.get("type") == "goodbye":
                    self.goodbyes += 1
                if "event_id" in frame:
                    self.event_ids.append(frame["event_id"])
                    self.cursor = max(self.cursor or 0, frame["event_id"])
                if frame.get("type") == "message" and "subtype" not in frame:
                    self.texts.append(frame["text"])
            socket.close()


def test_members_posting_and_listening_through_a_move_lose_nothing(world: World, daphnes) -> None:
    first, second = daphnes
    acme, general = world.acme, world.acme.channels["general"]
    listeners = [Listener(first, acme["bob"].token), Listener(second, acme["carol"].token)]
    for listener in listeners:
        listener.start()
        assert listener.ready.wait(10)
    posters = [
        Poster(first, acme["alice"].token, general, "alice"),
        Poster(second, acme["bob"].token, general, "bob"),
    ]
    for poster in posters:
        poster.start()
    _wait_for(lambda: all(len(p.posted) >= 3 for p in posters))

    # Copy while they post, let more land on the old shard, then freeze, flip and clean up.
    move_team_to_shard(Team.objects.get(id=acme.team.id), "shard_1", stop_after=TeamMove.Step.CAUGHT_UP)
    time.sleep(0.2)
    move = move_team_to_shard(Team.objects.get(id=acme.team.id), "shard_1")
    posted_by_flip = [len(p.posted) for p in posters]
    time.sleep(0.5)

    for poster in posters:
        poster.stop.set()
        poster.join(60)
        assert not poster.failures, poster.failures
    assert move.finished is not None
    assert [len(p.posted) for p in posters] > posted_by_flip  # and they went on posting after it
    expected = sorted(text for poster in posters for text in poster.posted)
    _wait_for(lambda: all(len(lst.texts) >= len(expected) for lst in listeners))
    for listener in listeners:
        listener.stop.set()
        listener.join(5)
        assert sorted(listener.texts) == expected  # every message once: none lost, none twice
        assert listener.event_ids == sorted(listener.event_ids)
        assert listener.goodbyes >= 1 and listener.connects >= 2  # told to leave, came back

    entry = team_entry(acme.team.id)
    assert (entry.shard, entry.status) == ("shard_1", Team.Status.ACTIVE)
    history = web(first, acme["alice"].token).conversations_history(channel=general, limit=200)["messages"]
    assert sorted(m["text"] for m in without_joins(history)) == expected
    assert team_rows("shard_0", acme.team.id).keys() == {"messaging.EventSequence"}
    print(
        f"move: writes paused {move.freeze_ms} ms; "
        f"{sum(p.refusals for p in posters)} posts refused with team_is_moving and retried"
    )


def test_sockets_opened_during_the_freeze_are_sent_away_until_the_flip(world: World, daphnes) -> None:
    first, _ = daphnes
    bob = web(first, world.acme["bob"].token)
    early = bob.rtm_connect()  # a ticket issued before the freeze
    team = Team.objects.get(id=world.acme.team.id)
    move_team_to_shard(team, "shard_1", stop_after=TeamMove.Step.FROZEN)

    socket = RtmSocket(early["url"])
    assert socket.recv()["type"] == "goodbye"  # no hello: it would read the frozen shard
    with pytest.raises(SlackApiError) as refused:
        bob.rtm_connect()
    assert refused.value.response.status_code == 503
    assert refused.value.response["error"] == "team_is_moving"
    assert refused.value.response.headers["Retry-After"] == "1"

    move_team_to_shard(team, "shard_1")
    again = RtmSocket(f"{bob.rtm_connect()['url'].split('&since=')[0]}&since={early['event_cursor']}")
    assert again.recv()["type"] == "hello"
    web(first, world.acme["alice"].token).chat_postMessage(
        channel=world.acme.channels["general"], text="moved"
    )
    assert again.until(lambda f: f.get("type") == "message")["text"] == "moved"
    again.close()
