"""Moving a team between shards: `manage.py move_team`, row for row, resumable at every step."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from chatproject.dbrouter import on_shard
from messaging.actions.reactions import add_emoji, remove_emoji
from messaging.models import EventSequence
from teams import moves, shard_copy
from teams.auth import caller_from_token
from teams.directory import team_entry
from teams.models import Team, TeamMove
from teams.shard_copy import team_tables
from tests.conftest import Api, World

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

Rows = dict[str, list[str]]


def team_rows(alias: str, team_id: int) -> Rows:
    """Every row of the team on a shard, as text, table by table (empty tables left out)."""
    found: Rows = {}
    with connections[alias].cursor() as cursor:
        for table in team_tables():
            cursor.execute(
                f"SELECT to_jsonb(t)::text FROM {table.table} t WHERE team_id = %s ORDER BY 1", [team_id]
            )
            rows = [row for (row,) in cursor.fetchall()]
            if rows:
                found[table.label] = rows
    return found


def _sequence(alias: str, team_id: int) -> EventSequence | None:
    return EventSequence.objects.using(alias).filter(team_id=team_id).first()


def fill(world: World, api: Api) -> list[str]:
    """Give acme a bit of everything: messages, a thread, reactions, a pin, an edit, a
    delete, an emoji, a DM and read state."""
    alice, bob = world.acme["alice"].token, world.acme["bob"].token
    general = world.acme.channels["general"]
    posted = [api("chat.postMessage", alice, channel=general, text=f"hello {n}")["ts"] for n in range(5)]
    api("chat.postMessage", bob, channel=general, text="a reply", thread_ts=posted[0])
    api("reactions.add", bob, channel=general, timestamp=posted[1], name="tada")
    api("pins.add", alice, channel=general, timestamp=posted[2])
    api("chat.update", alice, channel=general, ts=posted[3], text="edited")
    api("chat.delete", alice, channel=general, ts=posted[4])
    with on_shard("shard_0"):
        add_emoji(caller_from_token(alice), "party", url="https://example.test/party.png")
    dm = api("conversations.open", alice, users=world.acme["bob"].user_id)["channel"]["id"]
    api("chat.postMessage", alice, channel=dm, text="psst")
    api("conversations.mark", bob, channel=general, ts=posted[1])
    return posted


def _move(*args: str) -> str:
    out = io.StringIO()
    call_command("move_team", *args, stdout=out)
    # The passes found every change themselves: verification never had to repair the copy.
    assert "row by row" not in out.getvalue()
    return out.getvalue()


def _assert_moved(world: World, before: Rows) -> None:
    team_id = world.acme.team.id
    entry = team_entry(team_id)
    assert (entry.shard, entry.status) == ("shard_1", Team.Status.ACTIVE)
    assert team_rows("shard_1", team_id) == before
    # Only the frozen event sequence stays behind on shard_0, as a fence against stale writers.
    assert team_rows("shard_0", team_id).keys() == {"messaging.EventSequence"}
    assert _sequence("shard_0", team_id).frozen and not _sequence("shard_1", team_id).frozen
    assert TeamMove.objects.get(team_id=team_id).finished is not None


def test_move_copies_every_row_and_the_team_keeps_working(world: World, api: Api) -> None:
    fill(world, api)
    team_id = world.acme.team.id
    before = team_rows("shard_0", team_id)
    globex_before = team_rows("shard_1", world.globex.team.id)
    assert {
        "messaging.Message",
        "messaging.Reaction",
        "messaging.Pin",
        "messaging.CustomEmoji",
    } <= before.keys()

    printed = _move("--team", "acme", "--to", "shard_1")

    for phrase in ("Copying rows to shard_1", "Verified:", "Flipped: the team now lives on shard_1", "Done:"):
        assert phrase in printed
    _assert_moved(world, before)
    assert team_rows("shard_1", world.globex.team.id) == globex_before
    # The same tokens work, history is there, and the event log continues where it was.
    alice, general = world.acme["alice"].token, world.acme.channels["general"]
    last_event = _sequence("shard_1", team_id).last_event_id
    assert api("chat.postMessage", alice, channel=general, text="after the move")["ok"]
    assert _sequence("shard_1", team_id).last_event_id == last_event + 1
    history = api("conversations.history", alice, channel=general)["messages"]
    assert [m["text"] for m in history][:2] == ["after the move", "edited"]
    assert api("search.messages", alice, query="hello")["ok"]


def test_moving_back_replaces_the_tombstone(world: World, api: Api) -> None:
    fill(world, api)
    team_id = world.acme.team.id
    before = team_rows("shard_0", team_id)
    _move("--team", "acme", "--to", "shard_1")
    _move("--team", world.acme.team.slack_id, "--to", "shard_0")
    assert team_entry(team_id).shard == "shard_0"
    assert team_rows("shard_0", team_id) == before
    assert team_rows("shard_1", team_id).keys() == {"messaging.EventSequence"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--team", "nosuchteam", "--to", "shard_1"], "team_not_found: no team 'nosuchteam'"),
        (["--team", "acme", "--to", "shard_0"], "already_on_shard: acme already lives on shard_0"),
        (["--team", "acme", "--to", "shard_9"], "invalid_shard: 'shard_9' is not a shard"),
    ],
)
def test_bad_input_is_refused_readably_and_writes_nothing(
    world: World, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        _move(*args)
    assert not TeamMove.objects.exists()
    assert team_entry(world.acme.team.id).shard == "shard_0"


FROZEN_STEPS = {TeamMove.Step.FROZEN, TeamMove.Step.TAIL_COPIED, TeamMove.Step.VERIFIED}


@pytest.mark.parametrize("step", [s for s in TeamMove.Step.values if s not in ("planned", "cleaned")])
def test_a_move_stopped_after_any_step_resumes(world: World, api: Api, step: str) -> None:
    posted = fill(world, api)
    team_id, alice = world.acme.team.id, world.acme["alice"].token
    general = world.acme.channels["general"]
    before = team_rows("shard_0", team_id)

    printed = _move("--team", "acme", "--to", "shard_1", "--stop-after", step)

    assert f"Stopped after step {step}" in printed
    entry = team_entry(team_id)
    # The directory names the target only once the copy was verified while frozen.
    assert entry.shard == ("shard_1" if step == TeamMove.Step.FLIPPED else "shard_0")
    answer = api.raw("chat.postMessage", alice, channel=general, text="while stopped")
    if step in FROZEN_STEPS:
        assert entry.status == Team.Status.MOVING
        assert answer.status_code == 503 and answer["Retry-After"] == "1"
        assert answer.json() == {"ok": False, "error": "team_is_moving"}
    else:
        assert answer.json()["ok"]  # before the freeze and after the flip, the team works
        # A row copied earlier changes, and another goes: the next passes must notice both.
        assert api("chat.update", alice, channel=general, ts=posted[0], text="changed while stopped")["ok"]
        assert api(
            "reactions.remove", world.acme["bob"].token, channel=general, timestamp=posted[1], name="tada"
        )["ok"]
        before = team_rows("shard_0" if step != TeamMove.Step.FLIPPED else "shard_1", team_id)

    assert "Done:" in _move("--team", "acme", "--to", "shard_1")
    _assert_moved(world, before)


def test_a_crash_in_the_middle_of_the_copy_resumes(
    world: World, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(world, api)
    team_id = world.acme.team.id
    before = team_rows("shard_0", team_id)
    real_copy, calls = shard_copy.copy_rows, []

    def crash_on_third_batch(*args: object) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the copying process died")
        return real_copy(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(shard_copy, "COPY_CHUNK", 2)
    monkeypatch.setattr(shard_copy, "copy_rows", crash_on_third_batch)
    with pytest.raises(RuntimeError):
        _move("--team", "acme", "--to", "shard_1")
    move = TeamMove.objects.get(team_id=team_id)
    assert move.step == TeamMove.Step.TARGET_CLEARED and "died" in move.error
    assert 0 < sum(len(rows) for rows in team_rows("shard_1", team_id).values()) < 10
    assert team_entry(team_id).shard == "shard_0"

    # Before the resume, a copied channel is renamed and a new one takes its old name: the
    # copy left behind must not collide with it.
    alice = world.acme["alice"].token
    assert api("conversations.rename", alice, channel=world.acme.channels["random"], name="random2")["ok"]
    assert api("conversations.create", alice, name="random")["ok"]
    before = team_rows("shard_0", team_id)
    monkeypatch.setattr(shard_copy, "copy_rows", real_copy)
    assert "resuming a copy that stopped part-way" in _move("--team", "acme", "--to", "shard_1")
    _assert_moved(world, before)


def test_rows_changed_and_deleted_after_the_copy_are_caught_up(world: World, api: Api) -> None:
    fill(world, api)
    team_id, alice = world.acme.team.id, world.acme["alice"].token
    general = world.acme.channels["general"]
    _move("--team", "acme", "--to", "shard_1", "--stop-after", "copied")
    ts = api("chat.postMessage", alice, channel=general, text="after copy")["ts"]
    api("chat.update", alice, channel=general, ts=ts, text="changed after copy")
    history = api("conversations.history", alice, channel=general)["messages"]
    tada = next(m for m in history if m.get("reactions"))
    api("reactions.remove", world.acme["bob"].token, channel=general, timestamp=tada["ts"], name="tada")
    with on_shard("shard_0"):
        remove_emoji(caller_from_token(alice), "party")
    before = team_rows("shard_0", team_id)
    assert "messaging.Reaction" not in before and "messaging.CustomEmoji" not in before

    _move("--team", "acme", "--to", "shard_1")

    _assert_moved(world, before)


def test_a_copy_that_fails_verification_is_never_flipped_to(
    world: World, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(world, api)
    team_id, alice = world.acme.team.id, world.acme["alice"].token
    _move("--team", "acme", "--to", "shard_1", "--stop-after", "frozen")
    with connections["shard_1"].cursor() as cursor:  # the copy goes bad behind the mover's back
        cursor.execute("UPDATE messaging_message SET text = 'corrupt' WHERE team_id = %s", [team_id])
    monkeypatch.setattr(moves, "sync", lambda *args, **kwargs: {})  # and re-copying cannot repair it

    with pytest.raises(CommandError, match=r"move_verification_failed: .*messaging\.Message still differ"):
        _move("--team", "acme", "--to", "shard_1")

    # The team is given back its old shard, thawed, and the move waits to be run again.
    entry = team_entry(team_id)
    assert (entry.shard, entry.status) == ("shard_0", Team.Status.ACTIVE)
    assert api("chat.postMessage", alice, channel=world.acme.channels["general"], text="still here")["ok"]
    assert TeamMove.objects.get(team_id=team_id).step == TeamMove.Step.CAUGHT_UP
    monkeypatch.undo()
    before = team_rows("shard_0", team_id)
    out = io.StringIO()
    call_command("move_team", "--team", "acme", "--to", "shard_1", stdout=out)
    # The corruption was on the target, where no pass looks for changes: the check finds it.
    assert "Message differ; copying them again row by row" in out.getvalue()
    _assert_moved(world, before)


def test_an_unfinished_move_can_be_abandoned_before_its_flip(world: World, api: Api) -> None:
    fill(world, api)
    team_id, alice = world.acme.team.id, world.acme["alice"].token
    _move("--team", "acme", "--to", "shard_1", "--stop-after", "verified")

    assert "stays on shard_0" in _move("--team", "acme", "--abandon")

    entry = team_entry(team_id)
    assert (entry.shard, entry.status) == ("shard_0", Team.Status.ACTIVE)
    assert api("chat.postMessage", alice, channel=world.acme.channels["general"], text="stayed")["ok"]
    assert team_rows("shard_1", team_id) == {}
    assert TeamMove.objects.get(team_id=team_id).error == "abandoned at step verified"
    with pytest.raises(CommandError, match="no_move_in_progress"):
        _move("--team", "acme", "--abandon")
    before = team_rows("shard_0", team_id)
    _move("--team", "acme", "--to", "shard_1")  # a new move starts from the beginning
    assert team_rows("shard_1", team_id) == before


def test_every_team_scoped_model_moves_and_parents_come_first() -> None:
    tables = team_tables()
    labels = [t.label for t in tables]
    assert set(labels) == {
        "teams.Member",
        "teams.Bot",
        "messaging.Channel",
        "messaging.ChannelMember",
        "messaging.Message",
        "messaging.Reaction",
        "messaging.Pin",
        "messaging.CustomEmoji",
        "messaging.EventSequence",
        "messaging.Event",
    }
    for table in tables:
        for field in table.model._meta.concrete_fields:
            if field.is_relation:
                assert labels.index(field.related_model._meta.label) < labels.index(table.label)
    assert next(t for t in tables if t.label == "messaging.EventSequence").key == "team_id"
