"""One shard's PostgreSQL server goes down: its teams get fast, retryable errors while the
other shard's teams keep working, and everything recovers by itself when it returns.

shard_1 lives on a second PostgreSQL server of its own, which the test stops mid-way.
"""

import json
import re
import subprocess
import sys
import time

import pytest
from django.test import Client

from teams.models import Account, Team
from tests import servers
from tests.outages import api, request, second_postgres, wait_until
from tests.rtm_client import RtmSocket

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

FAST_ERROR_SECS = 0.1
RECOVERY_TIMEOUT_SECS = 30


@pytest.fixture(scope="module")
def split_shards(django_db_setup, django_db_blocker):
    """daphne serving shard_0 from the main server and shard_1 from a second one."""
    with second_postgres("chat_isolated_shard") as (postgres, url):
        env = {"CHAT_SHARD_URLS": f"{servers._database_url('shard_0')},{url}"}
        subprocess.run(
            [sys.executable, str(servers.ROOT / "manage.py"), "migrate", "--database", "shard_1"],
            env={**servers.test_environment(), **env},
            cwd=servers.ROOT,
            check=True,
            capture_output=True,
        )
        with servers.running_daphne(env) as daphne:
            yield postgres, env, daphne


def _create_team(env: dict[str, str], domain: str, shard: str) -> dict:
    created = subprocess.run(
        [
            *(sys.executable, str(servers.ROOT / "manage.py"), "create_team"),
            *("--domain", domain, "--name", domain.title(), "--owner-email", f"boss@{domain}.test"),
            *("--shard", shard, "--json"),
        ],
        env={**servers.test_environment(), **env},
        cwd=servers.ROOT,
        check=True,
        capture_output=True,
    )
    return json.loads(created.stdout)


def _post(server, token: str, channel: str, text: str):
    return api(server, "chat.postMessage", token, channel=channel, text=text)


def _history(server, token: str, channel: str) -> list[str]:
    answer = api(server, "conversations.history", token, channel=channel, limit=100).json()
    assert answer["ok"], answer
    return [m["text"] for m in answer["messages"]]


def test_a_shard_down_fails_fast_for_its_teams_only_and_recovers(split_shards) -> None:
    postgres, env, server = split_shards
    up = _create_team(env, "upco", "shard_0")
    down = _create_team(env, "downco", "shard_1")
    up_token, down_token = up["owner"]["token"], down["owner"]["token"]
    channel = {
        name: api(server, "conversations.list", token).json()["channels"][0]["id"]
        for name, token in (("up", up_token), ("down", down_token))
    }
    staff = Client()
    staff.force_login(Account.objects.create_superuser("ops@staff.test", "pw"))
    cookie = {"Cookie": f"sessionid={staff.cookies['sessionid'].value}"}

    def page(domain: str):
        team_id = Team.objects.get(domain=domain).id
        return request(f"{server.http}/admin/teams/member/?team_id={team_id}", headers=cookie)

    socket = RtmSocket.open(server, down_token)
    assert socket.recv()["type"] == "hello"
    assert _post(server, up_token, channel["up"], "up before").json()["ok"]
    assert _post(server, down_token, channel["down"], "down before").json()["ok"]
    socket.until(lambda f: f.get("text") == "down before")  # live, its replay done
    assert page("downco").status == 200 and page("upco").status == 200

    postgres.stop()
    # The first request finds the dead connections, or the pool gives up reconnecting
    # within 0.2 s, and the shard is marked down in this process: from then on its teams
    # are refused without waiting.
    first = _post(server, down_token, channel["down"], "refused 0")
    assert first.status == 503 and first.json() == {"ok": False, "error": "service_unavailable"}
    assert first.secs < 3, first.secs  # about 0.25 s on a quiet machine
    fast_errors, up_posts = [], []
    for n in range(1, 21):
        refused = _post(server, down_token, channel["down"], f"refused {n}")
        assert refused.status == 503 and refused.json() == {"ok": False, "error": "service_unavailable"}
        assert int(refused.headers["Retry-After"]) > 0
        fast_errors.append(refused.secs)
        answer = _post(server, up_token, channel["up"], f"up during {n}")
        assert answer.status == 200 and answer.json()["ok"], answer.body
        up_posts.append(answer.secs)
    # Each is a whole HTTP round trip (auth included) on a machine other tests share:
    # nine in ten within 100 ms, none anywhere near the pool's 5 s timeout.
    p90, slowest = sorted(fast_errors)[17], max(fast_errors)
    print(f"first error {first.secs * 1000:.0f} ms; p90 {p90 * 1000:.1f} ms; slowest {slowest * 1000:.1f} ms")
    assert p90 < FAST_ERROR_SECS and slowest < 1.0, fast_errors
    assert max(up_posts) < 1.0, up_posts
    refused_page = page("downco")
    assert refused_page.status == 503 and refused_page.secs < 1.0
    assert "temporarily unavailable" in refused_page.body.decode() and "Retry-After" in refused_page.headers
    assert page("upco").status == 200
    socket.send({"id": 7, "type": "message", "channel": channel["down"], "text": "refused on the socket"})
    reply = socket.until(lambda f: f.get("reply_to") == 7)
    assert reply["ok"] is False and reply["error"]["code"] == "service_unavailable"
    socket.send({"id": 8, "type": "ping"})
    assert socket.until(lambda f: f.get("reply_to") == 8)["type"] == "pong"  # the socket lives on
    readiness = request(f"{server.http}/readyz")
    report = readiness.json()
    assert readiness.status == 503 and report["status"] == "degraded", report
    assert not report["parts"]["shard_1"]["ok"] and report["parts"]["shard_0"]["ok"]
    assert report["parts"]["default"]["ok"] and report["parts"]["redis"]["ok"]
    assert report["failing_fast"] == ["shard_1"]
    assert readiness.secs < 3
    metrics = request(f"{server.http}/metrics", headers=servers.METRICS_AUTH).body.decode()
    assert re.search(r'chat_shard_errors_total\{kind="unreachable",shard="shard_1"\} [1-9]', metrics)
    fast = re.search(r'chat_shard_fast_failures_total\{shard="shard_1"\} (\d+)', metrics)
    assert fast and int(fast.group(1)) >= 20

    postgres.start()
    started = time.monotonic()
    wait_until(
        lambda: _post(server, down_token, channel["down"], "down after").status == 200,
        RECOVERY_TIMEOUT_SECS,
        "the shard's teams to be served again",
    )
    print(f"recovered {time.monotonic() - started:.1f} s after the server came back")
    assert page("downco").status == 200
    socket.until(lambda f: f.get("text") == "down after")  # and the open socket is live again
    socket.close()
    # New sockets read the shard from the gateway's worker threads, whose connections
    # died with the server: they must have been replaced, not reused.
    for n in range(3):
        fresh = RtmSocket.open(server, down_token)
        assert fresh.recv()["type"] == "hello"
        assert _post(server, down_token, channel["down"], f"fresh {n}").json()["ok"]
        assert fresh.until(lambda f: f.get("type") in ("message", "error"))["text"] == f"fresh {n}"
        fresh.close()
    wait_until(lambda: request(f"{server.http}/readyz").status == 200, RECOVERY_TIMEOUT_SECS, "readiness")
    assert _history(server, down_token, channel["down"]) == [
        "fresh 2",
        "fresh 1",
        "fresh 0",
        "down after",
        "down before",
    ]
    assert _history(server, up_token, channel["up"]) == [
        *(f"up during {n}" for n in range(20, 0, -1)),
        "up before",
    ]
