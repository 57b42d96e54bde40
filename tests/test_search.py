"""search.messages: what it finds, every modifier, sorting and paging, edits and deletes,
and that it never shows a message from a conversation the searcher cannot see.

Indexing runs as the job's own plain function (`reindex_team`, `index_messages`); one
test runs the after-commit enqueue with Celery in eager mode instead of a worker.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connections, transaction

from chatproject.celery import app as celery_app
from chatproject.dbrouter import on_shard
from jobs import search_tasks
from jobs.breakers import Outcome
from messaging.models import Message
from messaging.search import index as search_index
from messaging.search import run, ways
from messaging.search.index import index_messages
from teams import ids
from teams.models import Member
from tests.conftest import World, member_pk
from tests.search_helpers import index, ok, post, search, set_day

pytestmark = pytest.mark.django_db(databases="__all__")


def _texts(api, token: str, query: str, **args) -> list[str]:
    return [m["text"] for m in search(api, token, query, sort="timestamp", **args)["matches"]]


def _dm(api, token: str, other: str) -> str:
    return ok(api("conversations.open", token, users=other))["channel"]["id"]


def test_finds_stemmed_words_in_slack_shape(world: World, api) -> None:
    acme, general = world.acme, world.acme.channels["general"]
    first = post(api, acme["alice"].token, general, "The deployment failed again")
    post(api, acme["bob"].token, general, "deploying the fix now")
    post(api, acme["bob"].token, general, "lunch?")
    assert search(api, acme["carol"].token, "deploy")["total"] == 0  # not indexed yet
    index(acme)
    found = search(api, acme["carol"].token, "deploy", sort="timestamp", sort_dir="asc")
    assert [m["text"] for m in found["matches"]] == ["The deployment failed again", "deploying the fix now"]
    match = found["matches"][0]
    assert match["type"] == "message" and match["ts"] == first and match["team"] == acme.team.slack_id
    assert match["user"] == acme["alice"].user_id and match["username"] == "alice"
    assert match["channel"]["id"] == general and match["channel"]["name"] == "general"
    assert match["channel"]["is_private"] is False and match["channel"]["is_channel"] is True
    assert match["permalink"].endswith(f"/archives/{general}/p{first.replace('.', '')}")
    assert found["total"] == 2
    assert found["paging"] == {"count": 20, "total": 2, "page": 1, "pages": 1}
    assert found["pagination"] == {
        "total_count": 2,
        "page": 1,
        "per_page": 20,
        "page_count": 1,
        "first": 1,
        "last": 2,
    }
    answer = ok(api("search.messages", acme["carol"].token, query="deploy"))
    assert answer["query"] == "deploy"


def test_errors_and_token_types(world: World, api) -> None:
    alice = world.acme["alice"].token
    assert api("search.messages", alice)["error"] == "no_query"
    assert api("search.messages", alice, query="   ")["error"] == "no_query"
    assert api("search.messages", alice, query="x", count="many")["error"] == "invalid_arguments"
    assert api("search.messages", world.acme.bot.token, query="x")["error"] == "not_allowed_token_type"
    assert api("search.messages", None, query="x")["error"] == "not_authed"


def test_in_channel(world: World, api) -> None:
    acme, alice = world.acme, world.acme["alice"].token
    post(api, alice, acme.channels["general"], "budget for Q3")
    post(api, alice, acme.channels["random"], "budget memes")
    post(api, alice, acme.channels["secret"], "budget secrets")
    index(acme)
    assert _texts(api, alice, "budget in:#random") == ["budget memes"]
    assert _texts(api, alice, f"budget in:<#{acme.channels['random']}|random>") == ["budget memes"]
    assert _texts(api, alice, "budget in:#random in:#secret") == ["budget secrets", "budget memes"]
    # Everything said there: also the world's joins (search leaves no subtype out).
    # Not the world's joins of #general: Slack does not search who came and went.
    assert _texts(api, alice, "in:#general") == ["budget for Q3"]
    assert _texts(api, alice, "has joined the channel") == []
    assert _texts(api, alice, "budget in:#nowhere") == []
    assert _texts(api, acme["carol"].token, "budget in:#secret") == []  # exists, but not for carol


def test_in_dm_with_member(world: World, api) -> None:
    acme, alice = world.acme, world.acme["alice"].token
    post(api, alice, _dm(api, alice, acme["bob"].user_id), "lunch at noon?")
    post(api, alice, _dm(api, alice, acme["carol"].user_id), "lunch tomorrow?")
    post(api, alice, acme.channels["general"], "lunch is served")
    index(acme)
    assert _texts(api, alice, "lunch in:@bob") == ["lunch at noon?"]
    assert _texts(api, alice, f"lunch in:<@{acme['carol'].user_id}>") == ["lunch tomorrow?"]
    assert _texts(api, alice, "lunch in:@nobody") == []
    match = search(api, alice, "in:@bob")["matches"][0]
    assert match["channel"]["is_im"] and match["channel"]["user"] == acme["bob"].user_id
    assert match["channel"]["name"] == acme["bob"].user_id
    assert _texts(api, acme["bob"].token, "lunch in:@alice") == ["lunch at noon?"]


def test_from_member(world: World, api) -> None:
    acme, general = world.acme, world.acme.channels["general"]
    post(api, acme["alice"].token, general, "release notes draft")
    post(api, acme["bob"].token, general, "release notes final")
    index(acme)
    assert _texts(api, acme["carol"].token, "release from:@bob") == ["release notes final"]
    assert _texts(api, acme["carol"].token, "from:@BOB") == ["release notes final"]  # not his join
    assert _texts(api, acme["carol"].token, f"release from:<@{acme['alice'].user_id}>") == [
        "release notes draft"
    ]
    assert _texts(api, acme["alice"].token, "release from:me") == ["release notes draft"]
    assert _texts(api, acme["carol"].token, "release from:@bob from:@alice") == [
        "release notes final",
        "release notes draft",
    ]
    assert _texts(api, acme["carol"].token, "release from:@nobody") == []


def test_dates_are_days_in_the_searchers_timezone(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    days = {
        "report dec31": datetime(2023, 12, 31, 12, tzinfo=UTC),
        "report mar09": datetime(2024, 3, 9, 12, tzinfo=UTC),
        "report mar10": datetime(2024, 3, 10, 12, tzinfo=UTC),
        "report mar11": datetime(2024, 3, 11, 12, tzinfo=UTC),
        "report apr01": datetime(2024, 4, 1, 12, tzinfo=UTC),
        "report late mar11": datetime(2024, 3, 12, 2, tzinfo=UTC),  # 22:00 on the 11th in New York
    }
    for text, when in days.items():
        set_day(acme, post(api, alice, general, text), when)
    index(acme)

    def found(query: str) -> set[str]:
        return set(_texts(api, alice, f"report {query}"))

    assert found("before:2024-03-10") == {"report dec31", "report mar09"}
    assert found("after:2024-03-10") == {"report mar11", "report late mar11", "report apr01"}
    assert found("on:2024-03-10") == {"report mar10"}
    assert found("during:2024-03") == {"report mar09", "report mar10", "report mar11", "report late mar11"}
    assert found("during:2023") == {"report dec31"}
    assert found("after:2024-03-09 before:2024-03-11") == {"report mar10"}
    assert found("before:2024-03-01 after:2024-03-01") == set()
    assert found("on:2024-02-30") == set()  # no such day: nothing, not an error
    with on_shard(acme.team.shard):
        Member.objects.filter(id=member_pk(acme["alice"].user_id)).update(tz="America/New_York")
    assert found("on:2024-03-11") == {"report mar11", "report late mar11"}
    assert found("on:2024-03-12") == set()


def test_has_link_reaction_pin_and_is_thread(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    post(api, alice, general, "notes at https://example.com/notes")
    post(api, alice, general, "notes at <http://wiki.example.com/x|the wiki>")
    reacted = post(api, alice, general, "notes without a link")
    parent = post(api, alice, general, "notes thread")
    post(api, acme["bob"].token, general, "notes reply", thread_ts=parent)
    ok(api("reactions.add", acme["bob"].token, channel=general, timestamp=reacted, name="eyes"))
    ok(api("pins.add", acme["bob"].token, channel=general, timestamp=parent))
    index(acme)
    assert set(_texts(api, alice, "notes has:link")) == {
        "notes at https://example.com/notes",
        "notes at <http://wiki.example.com/x|the wiki>",
    }
    assert _texts(api, alice, "notes has:reaction") == ["notes without a link"]
    assert _texts(api, alice, "has:pin") == ["notes thread"]
    assert _texts(api, alice, "notes is:thread") == ["notes reply", "notes thread"]
    assert _texts(api, alice, "notes has:star") == []  # unsupported: matches nothing
    reply = search(api, alice, "reply")["matches"][0]
    assert reply["permalink"].endswith(f"?thread_ts={parent}&cid={general}")


def test_exact_phrase_and_exclusion(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    for text in ("quick brown fox", "brown and quick fox", "apple pie", "apple tart"):
        post(api, alice, general, text)
    index(acme)
    assert _texts(api, alice, '"quick brown"') == ["quick brown fox"]
    assert _texts(api, alice, "“quick brown”") == ["quick brown fox"]  # typographic quotes
    assert set(_texts(api, alice, "quick fox")) == {"quick brown fox", "brown and quick fox"}
    assert _texts(api, alice, "apple -pie") == ["apple tart"]
    assert _texts(api, alice, 'fox -"quick brown"') == ["brown and quick fox"]


def test_sorting_and_paging(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    texts = ["kiwi once", "kiwi kiwi kiwi kiwi", "kiwi twice kiwi", "kiwi at last", "no fruit"]
    for text in texts:
        post(api, alice, general, text)
    index(acme)
    by_score = [m["text"] for m in search(api, alice, "kiwi")["matches"]]
    assert by_score[0] == "kiwi kiwi kiwi kiwi" and by_score[1] == "kiwi twice kiwi"
    assert sorted(by_score) == sorted(texts[:4])
    assert _texts(api, alice, "kiwi") == [
        "kiwi at last",
        "kiwi twice kiwi",
        "kiwi kiwi kiwi kiwi",
        "kiwi once",
    ]
    assert _texts(api, alice, "kiwi", sort_dir="asc") == texts[:4]
    second = search(api, alice, "kiwi", sort="timestamp", count=3, page=2)
    assert [m["text"] for m in second["matches"]] == ["kiwi once"]
    assert second["paging"] == {"count": 3, "total": 4, "page": 2, "pages": 2}
    assert (second["pagination"]["first"], second["pagination"]["last"]) == (4, 4)
    assert search(api, alice, "kiwi", count=3, page=3)["matches"] == []


def test_edits_and_deletes_update_results(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    ts = post(api, alice, general, "alpha plan")
    parent = post(api, alice, general, "gamma thread")
    post(api, acme["bob"].token, general, "a reply", thread_ts=parent)
    index(acme)
    ok(api("chat.update", alice, channel=general, ts=ts, text="beta plan"))
    with on_shard(acme.team.shard):
        edited = Message.objects.get(team_id=acme.team.id, ts=ids.parse_ts(ts))
        assert index_messages(acme.team.shard, acme.team.id, [edited.id, edited.id]) == 1
    assert _texts(api, alice, "alpha") == [] and _texts(api, alice, "beta") == ["beta plan"]
    ok(api("chat.delete", alice, channel=general, ts=ts))
    assert _texts(api, alice, "beta") == []
    # A deleted parent stays as a tombstone: never a result, even before its job runs.
    ok(api("chat.delete", alice, channel=general, ts=parent))
    assert _texts(api, alice, "gamma") == []
    index(acme)
    with on_shard(acme.team.shard):
        tombstone = Message.objects.get(team_id=acme.team.id, ts=ids.parse_ts(parent))
        assert tombstone.is_deleted and tombstone.search_vector is None


def test_writes_queue_indexing_after_commit(world: World, api, django_capture_on_commit_callbacks) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    celery_app.conf.task_always_eager = True  # the job runs inside the callback, in this test's transaction
    try:
        with django_capture_on_commit_callbacks(using=acme.team.shard, execute=True):
            ts = post(api, alice, general, "orchid delivery")
        assert _texts(api, alice, "orchid") == ["orchid delivery"]
        with django_capture_on_commit_callbacks(using=acme.team.shard, execute=True):
            ok(api("chat.update", alice, channel=general, ts=ts, text="tulip delivery"))
        assert _texts(api, alice, "orchid") == [] and _texts(api, alice, "tulip") == ["tulip delivery"]
        with django_capture_on_commit_callbacks(using=acme.team.shard, execute=True):
            post(api, acme["bob"].token, general, "a reply keeps it a tombstone", thread_ts=ts)
            ok(api("chat.delete", alice, channel=general, ts=ts))
        with on_shard(acme.team.shard):
            tombstone = Message.objects.get(team_id=acme.team.id, ts=ids.parse_ts(ts))
        assert tombstone.is_deleted and tombstone.search_vector is None
    finally:
        celery_app.conf.task_always_eager = False


def test_a_broker_outage_does_not_fail_or_stall_posts(
    world: World, api, monkeypatch, caplog, django_capture_on_commit_callbacks
) -> None:
    attempts = []

    def broker_down(*args, **kwargs):
        attempts.append(args)
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(search_tasks.index_messages_task, "apply_async", broker_down)
    monkeypatch.setattr(search_tasks.PENDING, "broker_down_until", 0.0)
    monkeypatch.setattr(search_tasks.PENDING, "redis_down_until", 0.0)
    alice, general = world.acme["alice"].token, world.acme.channels["general"]
    with django_capture_on_commit_callbacks(using=world.acme.team.shard, execute=True):
        post(api, alice, general, "posted while the broker is down")
    with django_capture_on_commit_callbacks(using=world.acme.team.shard, execute=True):
        post(api, alice, general, "and again")
    assert "its drain not started" in caplog.text
    assert len(attempts) == 1  # the second post did not wait for the broker again
    # Both kept for the drain the beat's reclaim starts once the broker is back.
    waiting = [g.pending for g in search_tasks.PENDING.groups() if g.group == str(world.acme.team.id)]
    assert waiting == [2]


def test_never_shows_what_the_searcher_cannot_see(world: World, api) -> None:
    acme, globex = world.acme, world.globex
    alice, bob, carol = acme["alice"].token, acme["bob"].token, acme["carol"].token
    post(api, alice, acme.channels["secret"], "zebra in secret")
    post(api, alice, acme.channels["random"], "zebra in random")  # carol is not a member
    post(api, alice, _dm(api, alice, acme["bob"].user_id), "zebra in a DM")
    group = ok(api("conversations.open", alice, users=f"{acme['bob'].user_id},{acme['carol'].user_id}"))
    post(api, alice, group["channel"]["id"], "zebra in a group DM")
    post(api, globex["dave"].token, globex.channels["general"], "zebra at globex")
    index(acme, globex)
    everything = {"zebra in secret", "zebra in random", "zebra in a DM", "zebra in a group DM"}
    assert set(_texts(api, alice, "zebra")) == everything
    assert set(_texts(api, bob, "zebra")) == everything
    assert set(_texts(api, carol, "zebra")) == {"zebra in random", "zebra in a group DM"}
    for query in ("zebra in:#secret", f"zebra in:<#{acme.channels['secret']}>", "in:@bob", "from:@alice"):
        assert not {"zebra in secret", "zebra in a DM"} & set(_texts(api, carol, query))
    assert _texts(api, globex["dave"].token, "zebra") == ["zebra at globex"]
    assert _texts(api, globex["dave"].token, "zebra from:@alice") == []
    ok(api("conversations.leave", bob, channel=acme.channels["secret"]))
    assert "zebra in secret" not in _texts(api, bob, "zebra")


@pytest.mark.parametrize("window", [run.WINDOW_ROWS, 2])
def test_newest_first_way_finds_the_same(world: World, api, monkeypatch, window: int) -> None:
    """Common terms are read newest first; with a window too small for a page, every
    match is read instead. Either way the answers, and what is hidden, stay the same."""
    acme, alice, carol = world.acme, world.acme["alice"].token, world.acme["carol"].token
    for n in range(6):
        post(api, alice, acme.channels["general" if n % 2 else "secret"], f"common word {n}")
    index(acme)
    expected = ["common word 5", "common word 3", "common word 1"]
    monkeypatch.setattr(run, "DENSE_ESTIMATE", -1)  # every term counts as common
    monkeypatch.setattr(run, "RANKED", 2)
    monkeypatch.setattr(run, "WINDOW_ROWS", window)
    assert _texts(api, carol, "common", count=2) == expected[:2]
    assert _texts(api, carol, "common", count=2, page=2) == expected[2:]
    assert [m["text"] for m in search(api, carol, "common", count=2)["matches"]] == expected[:2]
    assert [m["text"] for m in search(api, carol, "common")["matches"]] == expected
    assert search(api, alice, "common")["total"] == 6


def test_queries_do_not_grow_with_matches(world: World, api, django_assert_max_num_queries) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    for n in range(25):
        post(api, alice, general, f"mango {n}")
    index(acme)
    from django.db import connections

    with django_assert_max_num_queries(4, connection=connections[acme.team.shard]):
        assert len(search(api, alice, "mango")["matches"]) == 20
    # An excluded partial word is checked on each row read: one more estimate, no more reads.
    with django_assert_max_num_queries(5, connection=connections[acme.team.shard]):
        assert len(search(api, alice, "mango -phoen*")["matches"]) == 20


def test_reindex_command(world: World, api, capsys) -> None:
    acme = world.acme
    post(api, acme["alice"].token, acme.channels["general"], "papaya salad")
    assert _texts(api, acme["alice"].token, "papaya") == []
    call_command("reindex", team="acme")
    assert "indexed 5 messages of acme" in capsys.readouterr().out  # and the world's 4 joins
    assert _texts(api, acme["alice"].token, "papaya") == ["papaya salad"]
    with pytest.raises(CommandError, match="no team with domain 'nope'"):
        call_command("reindex", team="nope")


def test_a_message_too_big_for_one_vector_is_indexed_by_its_start(world: World, api) -> None:
    """Distinct words past a tsvector's 1 MB: to_tsvector of the whole text would raise,
    failing the batch (and counting against the shard's search breaker) on every retry."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    words = " ".join(f"w{n:07d}x" for n in range(150_000))  # 1.5 MB, all distinct
    post(api, alice, general, "zebra crossing", attachments=json.dumps([{"text": words}]))
    post(api, alice, general, "zebra neighbour")
    index(acme)  # raised "string is too long for tsvector" before
    assert _texts(api, alice, "zebra") == ["zebra neighbour", "zebra crossing"]
    assert _texts(api, alice, "w0000001x") == ["zebra crossing"]  # early attachment words count
    assert _texts(api, alice, "w0149999x") == []  # past INDEXED_CHARS: not indexed


def test_only_the_shard_failing_counts_against_its_breaker(world: World) -> None:
    """A statement past PostgreSQL's limits is the data's fault; a timeout is the shard's."""

    def error_of(sql: str, timeout_ms: int) -> OperationalError:
        with pytest.raises(OperationalError) as raised, transaction.atomic(using="shard_0"):
            with connections["shard_0"].cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
                cursor.execute(sql)
        return raised.value

    too_big = "SELECT to_tsvector(string_agg(md5(i::text), ' ')) FROM generate_series(1, 40000) i"
    assert search_tasks.classify(error_of(too_big, 30_000)) is Outcome.IGNORED
    assert search_tasks.classify(error_of("SELECT pg_sleep(1)", 50)) is Outcome.FAILURE


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_a_locked_row_reschedules_the_job_instead_of_waiting(world: World, api, monkeypatch) -> None:
    """The batch skips a locked row and redoes it alone; that wait is bounded, so a
    transaction left open on the row cannot hold the job (and its drain's claim) forever."""
    acme = world.acme
    post(api, acme["alice"].token, acme.channels["general"], "held words")
    with on_shard(acme.team.shard):
        message_id = Message.objects.get(team_id=acme.team.id, text="held words").id
    monkeypatch.setattr(search_index, "ONE_ROW_LOCK_MS", 200)
    holding, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic(using=acme.team.shard), connections[acme.team.shard].cursor() as cursor:
                cursor.execute("SELECT 1 FROM messaging_message WHERE id = %s FOR UPDATE", [message_id])
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            index_messages(acme.team.shard, acme.team.id, [message_id])
        assert time.monotonic() - started < 5
        assert search_tasks.classify(raised.value) is Outcome.IGNORED
    finally:
        release.set()
        holder.join(10)
    assert index_messages(acme.team.shard, acme.team.id, [message_id]) == 1
    assert _texts(api, acme["alice"].token, "held") == ["held words"]


def test_index_ignores_other_teams_ids(world: World, api) -> None:
    post(api, world.globex["dave"].token, world.globex.channels["general"], "foreign words")
    with on_shard("shard_1"):
        foreign = list(Message.objects.filter(team_id=world.globex.team.id).values_list("id", flat=True))
    assert index_messages("shard_1", world.acme.team.id, foreign) == 0
    assert _texts(api, world.globex["dave"].token, "foreign") == []


def test_a_trailing_asterisk_finds_partial_words(world: World, api, monkeypatch) -> None:
    """`phoen*` finds "phoenix" as Slack does. The index holds stems ("running" as "run"),
    so a prefix is also looked up by its own starts, and each match rechecked."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    post(api, alice, general, "Project PHOENIX ships friday")
    post(api, alice, general, "pho for lunch")  # "pho" starts "phoen": found by the index, not a match
    post(api, alice, general, "running late")
    post(api, alice, general, "run the tests")
    post(api, alice, general, "she was happy")
    phoenician = json.dumps([{"text": "phoenician alphabet"}])
    post(api, acme["bob"].token, general, "ops bot", attachments=phoenician)
    post(api, alice, acme.channels["random"], "phoenix in random")
    index(acme)
    assert _texts(api, alice, "phoen*") == ["phoenix in random", "ops bot", "Project PHOENIX ships friday"]
    assert _texts(api, alice, "runn*") == ["running late"]
    assert _texts(api, alice, "runnin*") == ["running late"]
    assert _texts(api, alice, "happ*") == ["she was happy"]
    assert _texts(api, alice, "phoenix*") == ["phoenix in random", "Project PHOENIX ships friday"]
    assert _texts(api, alice, "Phoeni* ships") == ["Project PHOENIX ships friday"]
    assert _texts(api, alice, "phoen* runn*") == []  # both must match
    # With the rest of the language.
    assert _texts(api, alice, "phoen* in:#random") == ["phoenix in random"]
    assert _texts(api, alice, "phoen* from:@bob") == ["ops bot"]
    assert _texts(api, alice, "phoen* -friday -alphabet") == ["phoenix in random"]
    assert _texts(api, alice, 'phoen* "ships friday"') == ["Project PHOENIX ships friday"]
    by_score = search(api, alice, "phoen*")
    assert by_score["total"] == 3 and len(by_score["matches"]) == 3
    # Read newest first instead (a common prefix), the recheck reads attachments too.
    newest_first = _read_newest_first(monkeypatch)
    assert _texts(api, alice, "phoen*", count=2) == ["phoenix in random", "ops bot"]
    assert _texts(api, alice, "runn*", count=1) == ["running late"]
    assert len(newest_first) == 2 and None not in newest_first


def _read_newest_first(monkeypatch) -> list[ways.Found | None]:
    """Make searches read matches newest first (ways.newest_matches) whatever their number;
    returns what each of those reads found, as they happen."""
    found: list[ways.Found | None] = []
    read_newest = ways.newest_matches

    def newest_matches(*args, **kwargs) -> ways.Found | None:
        found.append(read_newest(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(run, "EXACT_UNDER", -1)
    monkeypatch.setattr(run, "DENSE_ESTIMATE", -1)
    monkeypatch.setattr(ways, "newest_matches", newest_matches)
    return found


def test_an_excluded_partial_word_excludes_what_it_would_find(world: World, api, monkeypatch) -> None:
    """`-phoen*` excludes every message `phoen*` finds ("phoenix", "Phoenician", in the text or
    its attachments) and keeps every other: the same prefix rules, the same recheck."""
    acme, alice, bob = world.acme, world.acme["alice"].token, world.acme["bob"].token
    general, random = acme.channels["general"], acme.channels["random"]
    post(api, alice, general, "Project PHOENIX ships friday")
    post(api, alice, general, "pho ships at lunch")  # found by the index for phoen*, not a match
    post(api, bob, general, "ops bot ships", attachments=json.dumps([{"text": "Phoenician alphabet"}]))
    post(api, bob, general, "bob ships too")
    post(api, alice, general, "ph meter ships")
    post(api, alice, general, "the possibility ships")  # held as "possibl"; no word starts so
    post(api, alice, general, "ships running late")
    post(api, alice, random, "phoenix ships in random")
    post(api, alice, random, "ships in random")
    index(acme)
    everything = _texts(api, alice, "ships")
    kept = ["ships in random", "ships running late", "the possibility ships", "ph meter ships"]
    kept += ["bob ships too", "pho ships at lunch"]
    assert _texts(api, alice, "ships -phoen*") == kept
    assert _texts(api, alice, "ships -PHOENI**") == kept
    found = _texts(api, alice, "ships phoen*")
    assert sorted(found + kept) == sorted(everything) and not set(found) & set(kept)
    # With the rest of the language.
    assert _texts(api, alice, "ships -phoen* -runn*") == [t for t in kept if t != "ships running late"]
    phoenixes = ["phoenix ships in random", "Project PHOENIX ships friday"]
    assert _texts(api, alice, "phoe* -phoenic*") == phoenixes
    assert _texts(api, alice, "ships -phoen* in:#random") == ["ships in random"]
    assert _texts(api, alice, "ships -phoen* from:@bob") == ["bob ships too"]
    assert _texts(api, alice, "-phoen* from:@bob") == ["bob ships too"]  # no word to search by
    assert "ops bot ships" not in _texts(api, alice, "-phoen*") and len(_texts(api, alice, "-phoen*")) == 6
    # A stem starting with the prefix is not a word starting with it: as `possibl*` does
    # not find "possibility", `-possibl*` keeps it.
    assert _texts(api, alice, "ships possibl*") == []
    assert "the possibility ships" in _texts(api, alice, "ships -possibl*")
    # Too short to be a partial word: as `ph*` searches the word "ph", `-ph*` excludes it.
    assert _texts(api, alice, "ships ph*") == ["ph meter ships"]
    assert _texts(api, alice, "ships -ph*") == [t for t in everything if t != "ph meter ships"]
    # Read newest first instead, the recheck reads attachments too.
    newest_first = _read_newest_first(monkeypatch)
    assert _texts(api, alice, "ships -phoen*", count=3) == kept[:3]
    assert _texts(api, alice, "ships -phoen* from:@bob", count=1) == ["bob ships too"]
    assert len(newest_first) == 2 and None not in newest_first


def test_an_asterisk_in_quotes_is_no_wildcard(world: World, api) -> None:
    """A phrase is matched as typed (Slack documents "*" only as the end of a partial word):
    "phoen* rising" is the words "phoen rising", not "phoenix rising"."""
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    post(api, alice, general, "phoenix rising")
    post(api, alice, general, "the phoen* rising typo")
    index(acme)
    assert _texts(api, alice, '"phoen* rising"') == ["the phoen* rising typo"]
    assert _texts(api, alice, 'rising -"phoen* rising"') == ["phoenix rising"]
    assert _texts(api, alice, "phoen* rising") == ["the phoen* rising typo", "phoenix rising"]


def test_a_hostile_wildcard_word_neither_fails_nor_widens(world: World, api) -> None:
    acme, alice, general = world.acme, world.acme["alice"].token, world.acme.channels["general"]
    post(api, alice, general, "phoenix rising")
    post(api, alice, general, "b and c")
    post(api, alice, general, "x marks the spot")
    index(acme)
    for query in ("*", "**", "'*", "\\*", "(*", "ph*", "phoen:*", "x:*|y*", "x & !y*", "x:* | !y"):
        assert _texts(api, alice, query) == [], query
    # Searched as the words in them, as without the "*": never as tsquery operators.
    assert _texts(api, alice, "a:b|c*") == ["b and c"]
    assert _texts(api, alice, "!x*") == ["x marks the spot"]
    assert _texts(api, alice, "phoenix *") == ["phoenix rising"]  # a lone "*" adds nothing
    assert _texts(api, alice, "phoen* *") == ["phoenix rising"]
    assert _texts(api, alice, "phoen* !x*") == []  # "!x*" is the word "x"
