"""rtm.start's body: gzip'd for clients that accept it (a cached, pre-compressed prefix plus
the caller's part), plain JSON for those that do not, the same state either way; and the
team-wide JSON PostgreSQL writes has the shapes the Python serializers give."""

import gzip
import json
import os
import pickle
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.db import connections
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient

from chatproject.dbrouter import on_shard
from messaging.models import Channel, CustomEmoji
from messaging.realtime import boot_cache, boot_sql
from messaging.realtime.deflate import CompressedPrefix, accepts_gzip, gzip_body
from messaging.shapes import channel_json
from teams import ids
from teams.actions import create_member
from teams.models import Member
from teams.shapes import member_json
from tests.browser import TIMEOUT_MS, session_cookie
from tests.conftest import World, member_pk

pytestmark = pytest.mark.django_db(databases="__all__")


def _boot(client, token: str, accept: str | None, **args) -> tuple[dict, object]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if accept is not None:
        headers["HTTP_ACCEPT_ENCODING"] = accept
    response = client.post(
        "/api/rtm.start", data=json.dumps(args), content_type="application/json", **headers
    )
    assert response.status_code == 200
    body = response.content
    if response.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body), response


def _without_ticket(boot: dict) -> dict:
    return {k: v for k, v in boot.items() if k != "url"}


@pytest.mark.parametrize("lean", [False, True])
def test_gzip_and_plain_bodies_carry_the_same_state(world: World, client, api, lean: bool) -> None:
    bob = world.acme["bob"].token
    api("chat.postMessage", world.acme["alice"].token, channel=world.acme.channels["general"], text="hi")
    api("conversations.open", bob, users=world.acme["carol"].user_id)
    with on_shard("shard_0"):
        CustomEmoji.objects.create(team_id=world.acme.team.id, name="party", url="https://e.test/p.png")
    create_member(world.acme.team, "zoë@acme.test", name="Zoë </script>")  # bumps the version
    plain, plain_response = _boot(client, bob, None, lean=lean)
    zipped, zipped_response = _boot(client, bob, "gzip, deflate, br", lean=lean)
    assert plain_response.get("Content-Encoding") is None
    assert zipped_response["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped_response["Vary"]
    assert len(zipped_response.content) * 2 < len(plain_response.content)
    assert _without_ticket(zipped) == _without_ticket(plain)
    assert plain["ok"] and plain["emoji"] == {"party": "https://e.test/p.png"}
    names = {u["name"] for u in plain["users"]}
    assert ("Zoë </script>" in {u["real_name"] for u in plain["users"]}) != lean and "bob" in names
    assert ("carol" in names) and ("alice" in names) != lean
    general = next(c for c in plain["channels"] if c["name"] == "general")
    # alice's message, and carol's and Zoë's joins, counted but not shown as unread
    assert general["is_member"] and (general["unread_count"], general["unread_count_display"]) == (3, 1)
    refused, response = _boot(client, bob, "gzip;q=0, identity", lean=lean)
    assert response.get("Content-Encoding") is None and _without_ticket(refused) == _without_ticket(plain)


# What JSON writers get wrong: quotes, backslashes, control characters, U+2028/2029 (valid
# JSON, not valid JavaScript before ES2019), astral characters, markup. No NUL: PostgreSQL
# text cannot hold it.
_TRICKY = st.sampled_from(['"', "\\", "/", "\u2028", "\u2029", "\x7f", "\x01", "\x1f", "\t", "\n", "\r"])
_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_EMOJI = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=("Cs",))


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(_TRICKY, _CHARS, _EMOJI), max_size=max_size).map("".join)


_MEMBER = st.fixed_dictionaries(
    {
        "name": _text(20),
        "real_name": _text(20),
        "display_name": _text(20),
        "title": _text(20),
        "phone": _text(20),
        "email": st.one_of(st.just(""), _text(20)),
        "avatar_hash": _text(10),
        "color": _text(6),
        "tz": st.sampled_from(["UTC", "America/New_York", "Asia/Kathmandu", "Not/AZone", ""]),
        "deleted": st.booleans(),
        "is_admin": st.booleans(),
        "is_owner": st.booleans(),
        "updated": st.integers(0, 2**40),
    }
)
_CHANNEL = st.fixed_dictionaries(
    {
        "name": _text(20),
        "topic": _text(30),
        "purpose": _text(30),
        "topic_last_set": st.integers(0, 2**40),
        "is_archived": st.booleans(),
    }
)
_TRICKY_MEMBER = {
    "name": 'a"b\\c',
    "real_name": "Zoë \U0001f600 \u2028 </script>",
    "display_name": "\x01\x1f\x7f",
    "title": 'Chief "quotes" \\ officer',
    "phone": "☎ 555",
    "email": "",
    "avatar_hash": "\u2029",
    "color": "\U0001f308",
    "tz": "America/New_York",
    "deleted": True,
    "is_admin": True,
    "is_owner": False,
    "updated": 1,
}
_TRICKY_CHANNEL = {
    "name": "ünï\U0001f680",
    "topic": 'tabs\tand\nnewlines \\ "',
    "purpose": "\u2028",
    "topic_last_set": 7,
    "is_archived": True,
}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(member=_TRICKY_MEMBER, channel=_TRICKY_CHANNEL, topic_by_member=True)
@given(member=_MEMBER, channel=_CHANNEL, topic_by_member=st.booleans())
def test_sql_shapes_match_the_python_serializers(
    world: World, member: dict, channel: dict, topic_by_member: bool
) -> None:
    """The same rows (carol and #general, rewritten by each example) through PostgreSQL's
    JSON and through member_json / channel_json."""
    team, carol = world.acme.team, member_pk(world.acme["carol"].user_id)
    with on_shard("shard_0"):
        others = Channel.objects.filter(team_id=team.id).exclude(is_general=True)
        assume(channel["name"] not in set(others.values_list("name", flat=True)))
        Member.objects.filter(id=carol).update(**member)
        Channel.objects.filter(team_id=team.id, is_general=True).update(
            **channel, topic_creator_id=carol if topic_by_member else None
        )
        members = list(Member.objects.filter(team_id=team.id).order_by("id"))
        users = json.loads(b"[" + boot_sql.users_json(team.id, team.slack_id) + b"]")
        public = list(Channel.objects.filter(team_id=team.id, kind=Channel.Kind.PUBLIC).order_by("id"))
        channels = [json.loads(text) for _, text in boot_sql.public_channels_json(team.id)]
    assert users == [member_json(m, team.slack_id) for m in members]
    assert any(u["profile"].get("bot_id") for u in users)
    assert channels == [channel_json(c, None) for c in public]


def test_spliced_gzip_is_one_valid_member() -> None:
    prefix = CompressedPrefix.of(b'{"ok":true,"users":[' + b'{"name":"x"},' * 5000 + b'{"name":"y"}],')
    suffix = b'"channels":[]}'
    body = gzip_body(prefix, suffix)
    assert gzip.decompress(body) == prefix.raw() + suffix
    assert zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(body) == prefix.raw() + suffix
    shared = pickle.loads(pickle.dumps(prefix))  # through Redis: compressed bytes only
    assert shared._raw is None and shared.raw() == prefix.raw() and shared.crc == prefix.crc
    assert gzip.decompress(gzip_body(shared, suffix)) == prefix.raw() + suffix
    assert gzip.decompress(gzip_body(None, suffix)) == suffix


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("x-gzip", True),
        ("GZip ; Q=0.5", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("deflate, br", False),
        # every entry is read, and gzip named outright rules over *, wherever it stands
        ("*;q=0, gzip", True),
        ("identity, *;q=0, gzip;q=0.5", True),
        ("*, gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("br, *;q=0", False),
        # q is read from whichever parameter carries it
        ("gzip;level=1;q=0", False),
        ("gzip;level=1;q=0.3", True),
        ("gzip;q=oops", True),
    ],
)
def test_accept_encoding(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_one_build_while_others_wait(world: World) -> None:
    """Threads of this process wait for one build; a build claimed by another process
    (its claim in Redis) is waited for, not repeated."""
    builds = []

    def build() -> str:
        builds.append(1)
        time.sleep(0.2)
        return "built"

    key = f"boot:test:{time.time_ns()}:part"
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(boot_cache._shared(key, build))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["built"] * 4 and len(builds) == 1

    other = f"boot:test:{time.time_ns()}:part"
    assert cache.add(f"{other}:building", 1, 10)  # as if another process were building it
    threading.Timer(0.3, lambda: cache.set(other, (time.time(), "theirs"), 10)).start()
    assert boot_cache._shared(other, build) == "theirs" and len(builds) == 1


def test_a_failed_build_is_taken_over_at_once(world: World) -> None:
    """Another process's build fails and frees its claim: a waiter here builds right away
    instead of sleeping out BUILD_WAIT_SECS. (_from_redis_or_build is the cross-process
    part: threads calling it share nothing but Redis, as processes do.)"""
    key = f"boot:test:{time.time_ns()}:part"
    claimed, fail = threading.Event(), threading.Event()

    def failing_build() -> str:
        claimed.set()
        fail.wait(10)
        raise RuntimeError("shard went away")

    def holder() -> None:
        with pytest.raises(RuntimeError):
            boot_cache._from_redis_or_build(key, failing_build, None)

    thread = threading.Thread(target=holder)
    thread.start()
    assert claimed.wait(10) and cache.get(f"{key}:building") is not None
    threading.Timer(0.2, fail.set).start()
    started = time.monotonic()
    assert boot_cache._from_redis_or_build(key, lambda: "mine", None)[1] == "mine"
    waited = time.monotonic() - started
    thread.join()
    assert 0.2 <= waited < boot_cache.BUILD_WAIT_SECS / 2
    assert cache.get(key)[1] == "mine" and cache.get(f"{key}:building") is None


def test_the_local_cache_is_bounded_by_bytes_not_entries(world: World, monkeypatch) -> None:
    """Many small teams' parts all stay; a few big ones push the oldest out."""
    stamp = time.time_ns()
    small = [f"boot:test:{stamp}:{n}:part" for n in range(40)]
    for key in small:
        boot_cache._shared(key, lambda: "x" * 100)
    assert all(boot_cache._local.get(key) == "x" * 100 for key in small)

    big = [f"boot:test:{stamp}:big{n}:part" for n in range(5)]
    parts = [CompressedPrefix.of(os.urandom(100_000)) for _ in big]  # does not compress
    monkeypatch.setattr(boot_cache, "LOCAL_BYTES", boot_cache.part_bytes(parts[0]) * 5 // 2)
    for key, part in zip(big, parts, strict=True):
        boot_cache._shared(key, lambda part=part: part)
    local = boot_cache._local
    assert [key for key in big if key in local.entries] == big[-2:]
    assert not any(key in local.entries for key in small)
    assert local.bytes == sum(e.size for e in local.entries.values()) <= boot_cache.LOCAL_BYTES
    assert local.bytes >= 2 * (200_000)  # both the compressed and the decoded bytes count


def test_a_thread_removes_only_its_own_build_lock(world: World) -> None:
    """B queued on A's lock; A finished and removed it; C came and put its own there.
    When B is done, C's lock must stay (else a fourth boot builds beside C). Here the
    test plays A and C around B's build; a failed build removes its lock too."""
    key = f"boot:test:{time.time_ns()}:part"
    building, finish = threading.Event(), threading.Event()

    def build() -> str:
        building.set()
        finish.wait(10)
        return "built"

    thread = threading.Thread(target=boot_cache._shared, args=(key, build))
    thread.start()
    assert building.wait(10)
    with boot_cache._local_lock:
        theirs = threading.Lock()
        boot_cache._build_locks[key] = theirs
    finish.set()
    thread.join()
    assert boot_cache._build_locks.get(key) is theirs
    del boot_cache._build_locks[key]

    failing = f"boot:test:{time.time_ns()}:part"
    with pytest.raises(ZeroDivisionError):
        boot_cache._shared(failing, lambda: 1 // 0)
    assert failing not in boot_cache._build_locks and cache.get(f"{failing}:building") is None


def test_a_straggler_builds_a_dropped_version_without_storing_it(world: World, monkeypatch) -> None:
    """A boot that read version 5 just before the bump to 6, in a process that holds
    neither: 5 was dropped from Redis when 6 was built and must not come back."""
    team_id, builds = time.time_ns(), []

    def build(version: int) -> Callable[[], str]:
        return lambda: builds.append(version) or f"v{version}"

    assert boot_cache._versioned(team_id, 5, "rooms", build(5)) == "v5"
    assert boot_cache._versioned(team_id, 6, "rooms", build(6)) == "v6"
    assert cache.get(boot_cache._key(team_id, 5, "rooms")) is None
    monkeypatch.setattr(boot_cache, "_local", boot_cache._LocalParts())  # another process
    assert boot_cache._versioned(team_id, 5, "rooms", build(5)) == "v5"
    assert cache.get(boot_cache._key(team_id, 5, "rooms")) is None
    assert not boot_cache._local.entries
    assert cache.get(boot_cache._key(team_id, 6, "rooms"))[1] == "v6"  # the newest stays
    assert boot_cache._versioned(team_id, 6, "rooms", build(6)) == "v6"
    assert builds == [5, 6, 5]


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_http_clients_read_the_boot(world: World, live_server) -> None:
    """slack_sdk (urllib: no gzip asked, plain JSON) and a client asking for gzip over HTTP."""
    token = world.acme["bob"].token
    sdk = WebClient(token=token, base_url=f"{live_server.url}/api/").rtm_start()
    assert sdk["ok"] and {u["name"] for u in sdk["users"]} >= {"alice", "bob", "carol"}
    request = urllib.request.Request(
        f"{live_server.url}/api/rtm.start",
        data=b"{}",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        boot = json.loads(gzip.decompress(response.read()))
    assert _without_ticket(boot) == _without_ticket(sdk.data)


@pytest.mark.browser
@pytest.mark.django_db(databases="__all__", transaction=True)
def test_the_web_client_boots_from_the_gzip_body(world: World, chromium, web_server) -> None:
    """Chromium asks for gzip, gets the spliced body, and the client boots from it."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{**session_cookie("bob@acme.test", world.acme.team.id), "url": web_server.http}])
    page = context.new_page()
    with page.expect_response(lambda r: r.url.endswith("/api/rtm.start")) as booted:
        page.goto(web_server.http + "/")
    page.wait_for_selector("#client[data-state=live]")
    assert booted.value.headers.get("content-encoding") == "gzip"
    users = page.evaluate("async () => (await import('/static/client/store.js')).state.users.size")
    assert users == 4  # alice, bob, carol and the bot, from the gzip'd body
    context.close()


def test_slack_ids_in_sql_match_ids_encode() -> None:
    numbers = [1, 9, 10, 35, 36, 36**12 - 1, 36**12, 119907203640455177, ids.MAX_ID]
    with connections["shard_0"].cursor() as cursor:
        cursor.execute(
            f"SELECT {boot_sql.slack_id_sql('U', 'n')} FROM unnest(%s::bigint[]) AS t(n)", [numbers]
        )
        assert [row[0] for row in cursor.fetchall()] == [ids.encode(ids.USER, n) for n in numbers]


def test_a_part_is_built_again_once_older_than_the_cache_time(world: World, api, monkeypatch) -> None:
    """A quiet team keeps its boot_version for days, but tz_offset moves with daylight
    saving: no part, here or in Redis, is served once older than BOOT_CACHE_SECS. (A
    member's zone changed without an event stands for the offset changing.)"""
    monkeypatch.setattr(boot_cache, "BOOT_CACHE_SECS", 1)
    bob = world.acme["bob"].token

    def carol() -> dict:
        return next(u for u in api("rtm.start", bob)["users"] if u["name"] == "carol")

    assert carol()["tz"] != "Asia/Kolkata"
    with on_shard("shard_0"):
        Member.objects.filter(team_id=world.acme.team.id, name="carol").update(tz="Asia/Kolkata")
    assert carol()["tz"] != "Asia/Kolkata"  # the same version, cached
    time.sleep(1.2)
    assert carol()["tz"] == "Asia/Kolkata" and carol()["tz_offset"] == 19800


def test_a_new_version_drops_the_one_before_from_redis(world: World, api) -> None:
    bob, team_id = world.acme["bob"].token, world.acme.team.id
    before = int(api("rtm.start", bob)["cache_version"][1:])
    assert cache.get(boot_cache._key(team_id, before, "people")) is not None
    api("conversations.create", world.acme["alice"].token, name="one-more")
    after = int(api("rtm.start", bob)["cache_version"][1:])
    assert after == before + 1
    assert cache.get(boot_cache._key(team_id, after, "people")) is not None
    assert cache.get(boot_cache._key(team_id, before, "people")) is None
    assert cache.get(boot_cache._key(team_id, before, "rooms")) is None


def test_parts_of_another_release_are_not_read(world: World, api) -> None:
    """During a deploy both releases share Redis: the one before stored parts under
    `boot:<team>:<version>:<part>`, in its own format."""
    bob, team_id = world.acme["bob"].token, world.acme.team.id
    version = int(api("rtm.start", bob)["cache_version"][1:]) + 1
    api("conversations.create", world.acme["alice"].token, name="after-deploy")
    for part in ("people", "rooms"):
        cache.set(f"boot:{team_id}:{version}:{part}", CompressedPrefix.of(b"old"), 60)
    boot = api("rtm.start", bob)
    assert boot["ok"] and boot["cache_version"] == f"v{version}"
    assert {u["name"] for u in boot["users"]} >= {"alice", "bob", "carol"}
    assert "after-deploy" in {c["name"] for c in boot["channels"]}
