"""Redis goes down: posting still persists, readiness says degraded, nothing crashes;
sockets on the posting process hear the posts at once, and when Redis returns the
publish backlog's copies double nothing.

The daphne under test uses a Redis of its own, which the test stops and restarts.
"""

import re
import time

import pytest

from tests.conftest import Api, World
from tests.outages import api, request, second_redis, wait_until
from tests.rtm_client import RtmSocket, messages
from tests.servers import METRICS_AUTH, running_daphne

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

RECOVERY_TIMEOUT_SECS = 30
LINKED = "during 1 <https://example.com/a|link>"  # its preview job cannot be queued meanwhile


@pytest.fixture(scope="module")
def own_redis(django_db_setup, django_db_blocker):
    with second_redis() as (redis_server, url), running_daphne({"CHAT_REDIS_URL": url}) as daphne:
        yield redis_server, daphne


def _deferred(metrics: str) -> float:
    """Events whose publish failed, per /metrics (every process of this test run adds up)."""
    found = re.search(r'chat_events_published_total\{result="deferred"\} ([\d.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_redis_down_posts_persist_and_sockets_catch_up(world: World, own_redis, client) -> None:
    redis_server, server = own_redis
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    socket = RtmSocket.open(server, bob)
    assert socket.recv()["type"] == "hello"
    assert api(server, "chat.postMessage", alice, channel=general, text="before").json()["ok"]
    socket.until(lambda f: f.get("text") == "before")

    deferred_before = _deferred(request(f"{server.http}/metrics", headers=METRICS_AUTH).body.decode())
    redis_server.stop()
    during = []
    for n in range(3):
        text = f"during {n}" if n != 1 else LINKED
        answer = api(server, "chat.postMessage", alice, channel=general, text=text)
        assert answer.status == 200 and answer.json()["ok"], answer.body
        during.append(answer.secs)
        # Posted through the socket's own process: its hub takes the event from the
        # publishing thread, without Redis (hubs.py).
        socket.until(lambda f, text=text: f.get("text") == text, timeout=5)
    print(f"posts while Redis is down: slowest {max(during) * 1000:.0f} ms")
    assert max(during) < 2.0, during
    history = api(server, "conversations.history", bob, channel=general).json()
    assert [m["text"] for m in history["messages"]][:4] == ["during 2", LINKED, "during 0", "before"]
    # What cannot fail open (a socket's one-time ticket lives in Redis) fails retryably.
    refused = api(server, "rtm.connect", bob)
    assert refused.status == 503 and refused.json() == {"ok": False, "error": "service_unavailable"}
    assert request(f"{server.http}/healthz").status == 200
    readiness = request(f"{server.http}/readyz")
    report = readiness.json()
    assert readiness.status == 503 and report["status"] == "degraded", report
    assert not report["parts"]["redis"]["ok"]
    # Public: it names the kind of failure, never the host and port behind it.
    assert report["parts"]["redis"]["error"] and "127.0.0.1" not in readiness.body.decode()
    assert all(report["parts"][part]["ok"] for part in ("default", "shard_0", "shard_1"))
    assert readiness.secs < 3
    metrics = request(f"{server.http}/metrics", headers=METRICS_AUTH)  # without the part kept in Redis
    assert metrics.status == 200 and "chat_redis_up 0.0" in metrics.body.decode()
    assert _deferred(metrics.body.decode()) - deferred_before == 3
    # Posted by another process (this one, whose publish goes to the Redis the daphne does
    # not use): the socket can only learn of it from the log, once its Redis is back.
    assert Api(client)("chat.postMessage", alice, channel=general, text="elsewhere")["ok"]

    redis_server.start()
    started = time.monotonic()
    socket.until(lambda f: f.get("text") == "elsewhere", timeout=RECOVERY_TIMEOUT_SECS)
    print(f"socket caught up {time.monotonic() - started:.1f} s after Redis came back")
    wait_until(lambda: request(f"{server.http}/readyz").status == 200, RECOVERY_TIMEOUT_SECS, "readiness")
    assert api(server, "chat.postMessage", alice, channel=general, text="after").json()["ok"]
    socket.until(lambda f: f.get("text") == "after")
    assert messages(socket.seen) == ["before", "during 0", LINKED, "during 2", "elsewhere", "after"]
    event_ids = [f["event_id"] for f in socket.seen if "event_id" in f]
    assert event_ids == sorted(set(event_ids))  # nothing doubled, in log order
    # New sockets are admitted again.
    fresh = RtmSocket.open(server, bob)
    assert fresh.recv()["type"] == "hello"
    fresh.close()
    socket.close()


def test_presence_sub_during_an_outage_works_once_redis_is_back(world: World, own_redis) -> None:
    """The process's first presence subscription fails while Redis is down: the socket is
    told so (and is not killed), and later subscriptions are not left waiting forever."""
    redis_server, server = own_redis
    alice, bob = world.acme["alice"], world.acme["bob"].token
    socket = RtmSocket.open(server, bob)
    assert socket.recv()["type"] == "hello"
    redis_server.stop()
    try:
        socket.send({"id": 7, "type": "presence_sub", "ids": [alice.user_id]})
        refused = socket.until(lambda f: f.get("reply_to") == 7)
        assert refused["type"] == "error" and refused["error"]["code"] == "presence_unavailable"
    finally:
        redis_server.start()
    wait_until(lambda: request(f"{server.http}/readyz").status == 200, RECOVERY_TIMEOUT_SECS, "readiness")
    fresh = RtmSocket.open(server, bob)
    assert fresh.recv()["type"] == "hello"
    # Ready is the server's own Redis client; the layer's connections come back on their
    # own schedule, and a refusal meanwhile says "try again", which a client does.
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECS
    for attempt in range(1000):
        fresh.send({"id": 100 + attempt, "type": "presence_sub", "ids": [alice.user_id]})
        answer = fresh.until(
            lambda f: f.get("type") == "presence_change" or f.get("reply_to") == 100 + attempt  # noqa: B023
        )
        if answer.get("type") == "presence_change" or time.monotonic() > deadline:
            break
        assert answer["error"]["code"] == "presence_unavailable"
        time.sleep(0.5)
    assert answer["type"] == "presence_change" and answer["user"] == alice.user_id
    fresh.close()
    socket.close()
