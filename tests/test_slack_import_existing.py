"""Importing into an existing team that is still empty (as create_team made it): its owner
takes their archive self, #general and #random become the archive's, the team is closed
while it imports; a team with content is refused; a failed import leaves the team as it
was, active and empty, never deleted."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.importer import ImportFailed, run_import
from jobs.slack_export.reserve import start_import
from messaging.actions.channels import create_channel, invite, rename, set_topic_or_purpose
from messaging.actions.posting import post_message
from messaging.models import Channel, ChannelMember, Event, EventSequence, Message
from teams import ids
from teams.actions import CreatedTeam, create_team, set_team_status
from teams.auth import caller_from_token
from teams.errors import ApiError
from teams.models import Bot, Member, Team, TeamMembership
from tests import slack_fixtures as fx
from tests.conftest import World
from tests.slack_snapshot import snapshot

pytestmark = pytest.mark.django_db(databases="__all__")


def _empty_team(domain: str, owner_email: str = "alice@old.test") -> CreatedTeam:
    return create_team(domain, domain.title(), owner_email, password="pw", shard="shard_1")


def _state(created: CreatedTeam) -> dict[str, Any]:
    """Everything an empty team has, to compare before and after a failed import."""
    team_id = created.team.id
    with on_shard("shard_1"):
        return {
            "snapshot": snapshot(team_id, "shard_1"),
            "members": sorted(Member.objects.filter(team_id=team_id).values_list("id", "name", "account_id")),
            "bots": sorted(Bot.objects.filter(team_id=team_id).values_list("id", "member_id")),
            "channels": sorted(Channel.objects.filter(team_id=team_id).values_list("id", "name", "created")),
            "memberships": sorted(
                ChannelMember.objects.filter(team_id=team_id).values_list("id", "last_read")
            ),
            "frozen": EventSequence.objects.get(team_id=team_id).frozen,
        }


def _archive(tmp_path: Path, **changes: Any) -> Path:
    files = fx.export_files()
    files.update(changes)
    return fx.write_zip(tmp_path / "old.zip", files)


def test_import_into_an_empty_team(tmp_path: Path) -> None:
    created = _empty_team("emptyco")
    team_id, owner_id = created.team.id, created.owner_id
    with on_shard("shard_1"):
        before = {c.name: c.id for c in Channel.objects.filter(team_id=team_id)}
    job = start_import(_archive(tmp_path), domain="emptyco")
    assert job.team_id == team_id and Team.objects.get(id=team_id).status == "importing"
    with pytest.raises(ApiError, match="team_not_found"):  # closed while it fills
        caller_from_token(created.owner_token)
    with on_shard("shard_1"):
        assert EventSequence.objects.get(team_id=team_id).frozen  # no write can land meanwhile
    job = run_import(job.id)
    assert job.status == "done", job.errors
    assert Team.objects.get(id=team_id).status == "active"
    owner = caller_from_token(created.owner_token)  # the owner's token works again
    assert owner.member_id == owner_id
    caller_from_token(created.bot_token)
    with on_shard("shard_1"):
        alice = Member.objects.get(id=owner_id)
        # The owner is the archive's alice (same email): her profile, her history.
        assert (alice.name, alice.tz, alice.title, alice.is_owner) == ("alice", "Europe/Berlin", "Boss", True)
        assert Message.objects.filter(team_id=team_id, user_id=owner_id).count() == 10
        assert Member.objects.filter(team_id=team_id, email="alice@old.test").count() == 1
        assert Member.objects.filter(team_id=team_id, name="chatbot", is_bot=True).exists()
        general = Channel.objects.get(team_id=team_id, is_general=True)
        random = Channel.objects.get(team_id=team_id, name="random")
        assert (general.id, general.name, general.topic) == (before["general"], "general", "Company-wide")
        assert random.id == before["random"] and Message.objects.filter(channel=random).count() == 2
        assert Channel.objects.filter(team_id=team_id).count() == fx.EXPECTED["channels"]
        assert not EventSequence.objects.get(team_id=team_id).frozen
        assert Event.objects.filter(team_id=team_id, type="team_imported").count() == 1
    assert job.counts == {**fx.EXPECTED, "members": fx.EXPECTED["members"] + 1}  # + the team's bot
    assert TeamMembership.objects.filter(team_id=team_id).count() == 3  # alice (the owner), bob, carol
    # The same content as an import into a new team.
    fresh = run_import(start_import(_archive(tmp_path), shard="shard_0").id)
    merged, new = snapshot(team_id, "shard_1"), snapshot(int(fresh.team_id or 0), "shard_0")
    for part in ("conversations", "messages", "reactions", "pins"):
        assert merged[part] == new[part], part
    assert [m for m in merged["members"] if m[0] != "chatbot"] == new["members"]


def test_an_owner_the_archive_lacks_stays_and_is_in_general(tmp_path: Path) -> None:
    created = _empty_team("zedco", "zed@elsewhere.test")
    job = run_import(start_import(_archive(tmp_path), domain="zedco").id)
    assert job.status == "done", job.errors
    with on_shard("shard_1"):
        zed = Member.objects.get(id=created.owner_id)
        assert (zed.name, zed.is_owner) == ("zed", True)
        general = Channel.objects.get(team_id=created.team.id, is_general=True)
        members = set(ChannelMember.objects.filter(channel=general).values_list("member__name", flat=True))
    assert members == {"zed", "alice", "bob", "carol"}
    assert job.counts["members"] == fx.EXPECTED["members"] + 2  # + the owner and the bot


def test_rerun_into_an_existing_team_is_idempotent(tmp_path: Path) -> None:
    _empty_team("againco")
    job = run_import(start_import(_archive(tmp_path), domain="againco").id)
    first = snapshot(int(job.team_id or 0), "shard_1")
    job.status, job.checkpoint = "running", {"plan": job.checkpoint["plan"]}
    job.save()
    again = run_import(job.id)
    assert again.status == "done" and snapshot(int(job.team_id or 0), "shard_1") == first


def test_a_team_with_content_is_refused(world: World, tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    with on_shard("shard_0"):  # its members' joins in #general are setup: refused for its people
        assert Message.objects.filter(team_id=world.acme.team.id, subtype="channel_join").exists()
    with pytest.raises(ApiError, match="members besides its owner") as refused:
        start_import(archive, domain="acme")
    assert refused.value.code == "team_not_empty"
    globex = world.globex
    with on_shard(globex.team.shard):
        post_message(caller_from_token(globex["dave"].token), globex.channels["general"], text="hi")
    with pytest.raises(ApiError, match="it has messages"):
        start_import(archive, domain="globex")
    with pytest.raises(ApiError, match="is on shard_1, not shard_0"):
        start_import(archive, domain="globex", shard="shard_0")
    # Both stay open and writable.
    for team in (world.acme, globex):
        assert Team.objects.get(id=team.team.id).status == "active"
        caller = caller_from_token(team.people[next(iter(team.people))].token)
        with on_shard(team.team.shard):
            post_message(caller, team.channels["general"], text="still here")
    assert not TransferJob.objects.exists()


def _set_up(created: CreatedTeam) -> list[tuple[str, str]]:
    """What an owner does before importing: a channel, renamed, the team's bot added to it
    and to #random. Returns the system messages that said so, (subtype, user name)."""
    owner = caller_from_token(created.owner_token)
    bot = ids.encode(ids.USER, created.bot_user_id)
    with on_shard("shard_1"):
        plans = create_channel(owner, "plans", is_private=False)
        invite(owner, plans.slack_id, [bot])
        rename(owner, plans.slack_id, "roadmap")
        random = Channel.objects.get(team_id=created.team.id, name="random")
        invite(owner, random.slack_id, [bot])
        names = dict(Member.objects.filter(team_id=created.team.id).values_list("id", "name"))
        said = Message.objects.filter(team_id=created.team.id).order_by("ts")
        return [(m.subtype, names[m.user_id]) for m in said]


def test_an_import_keeps_the_setup_and_what_it_said(tmp_path: Path, settings: Any) -> None:
    """Channels made and people added before an import post system messages: they are
    setup, not content. The import takes the team, keeps the channels, memberships and
    the messages that tell of them (every member they name stays); a failed import puts
    them all back as they were."""
    settings.IMPORT_BATCH_MESSAGES = 5
    created = _empty_team("setupco")
    team_id = created.team.id
    said = _set_up(created)
    assert said == [("channel_join", "alice"), ("channel_join", "chatbot"), ("channel_name", "alice"),
                    ("channel_join", "chatbot")]  # fmt: skip
    with on_shard("shard_1"):
        setup = {m.id: m.ts for m in Message.objects.filter(team_id=team_id)}
    before = _state(created)

    def break_mid_messages(job: TransferJob) -> None:
        if job.phase == "messages" and job.done >= 5:
            raise RuntimeError("the worker's disk broke")

    with pytest.raises(RuntimeError):
        run_import(start_import(_archive(tmp_path), domain="setupco").id, break_mid_messages)
    assert Team.objects.get(id=team_id).status == "active"
    assert _state(created) == before  # the setup's messages too

    job = run_import(start_import(_archive(tmp_path), domain="setupco").id)
    assert job.status == "done", job.errors
    assert job.counts["messages"] == fx.EXPECTED["messages"] + len(setup)
    with on_shard("shard_1"):
        kept = Message.objects.filter(team_id=team_id, id__in=setup)
        assert {m.id: m.ts for m in kept} == setup
        members = set(Member.objects.filter(team_id=team_id, deleted=False).values_list("id", flat=True))
        for message in kept:  # each names someone who is still there, in that channel
            assert message.user_id in members
            if message.subtype == "channel_join":
                assert ChannelMember.objects.filter(
                    channel_id=message.channel_id, member_id=message.user_id
                ).exists()
        roadmap = Channel.objects.get(team_id=team_id, name="roadmap")  # not in the archive: as it was
        assert set(ChannelMember.objects.filter(channel=roadmap).values_list("member_id", flat=True)) == {
            created.owner_id,
            created.bot_user_id,
        }
        random = Channel.objects.get(team_id=team_id, name="random")  # the archive's, the bot still in it
        assert ChannelMember.objects.filter(channel=random, member_id=created.bot_user_id).exists()
        assert Message.objects.filter(channel=random).count() == 2 + 1  # the archive's and the bot's join
        assert random.last_ts == max(setup.values())  # what was said last is the bot's join
        assert not ChannelMember.objects.filter(team_id=team_id, last_read__lt=F("channel__last_ts")).exists()
    # Apart from the setup's messages, the same content as an import into a new team.
    fresh = run_import(start_import(_archive(tmp_path), shard="shard_0").id)
    merged, new = snapshot(team_id, "shard_1"), snapshot(int(fresh.team_id or 0), "shard_0")
    setup_ts = {ids.format_ts(ts) for ts in setup.values()}
    assert [m for m in merged["messages"] if m[1] not in setup_ts] == new["messages"]


def test_a_topic_set_before_an_import_is_content(tmp_path: Path) -> None:
    """A topic's message is someone's words (and would contradict the archive's topic)."""
    created = _empty_team("topicco")
    with on_shard("shard_1"):
        general = Channel.objects.get(team_id=created.team.id, is_general=True)
        set_topic_or_purpose(caller_from_token(created.owner_token), general.slack_id, "topic", "Plans")
    with pytest.raises(ApiError, match="it has messages"):
        start_import(_archive(tmp_path), domain="topicco")
    assert Team.objects.get(id=created.team.id).status == "active"


def test_the_command_takes_an_empty_team_and_refuses_a_full_one(world: World, tmp_path: Path) -> None:
    _empty_team("cmdco")
    out = io.StringIO()
    archive = str(_archive(tmp_path))
    command = ["import_slack", archive, "--team", "cmdco", "--name", "Old Co"]
    call_command(*command, stdout=out, stderr=io.StringIO())
    assert "(cmdco)" in out.getvalue()
    team = Team.objects.get(domain="cmdco")
    assert (team.status, team.name) == ("active", "Old Co")
    with pytest.raises(CommandError, match="team 'acme' is not empty"):
        call_command("import_slack", archive, "--team", "acme", stderr=io.StringIO())


def test_a_bad_archive_leaves_the_existing_team_intact(tmp_path: Path) -> None:
    created = _empty_team("keepco")
    before = _state(created)
    bad = _archive(tmp_path, **{"general/2017-07-14.json": b"[{oops"})
    job = start_import(bad, domain="keepco")
    with pytest.raises(ImportFailed, match="malformed JSON"):
        run_import(job.id)
    assert Team.objects.get(id=created.team.id).status == "active"
    assert _state(created) == before
    caller_from_token(created.owner_token)


def test_a_failure_after_writing_puts_the_team_back(tmp_path: Path, settings: Any) -> None:
    """An import that dies half-way through its messages (members, channels and some
    messages written, #general changed) leaves the team as it was, and usable."""
    settings.IMPORT_BATCH_MESSAGES = 5
    created = _empty_team("lateco")
    before = _state(created)

    def break_mid_messages(job: TransferJob) -> None:
        if job.phase == "messages" and job.done >= 5:
            raise RuntimeError("the worker's disk broke")

    job = start_import(_archive(tmp_path), domain="lateco")
    with pytest.raises(RuntimeError):
        run_import(job.id, break_mid_messages)
    job.refresh_from_db()
    assert job.status == "failed" and "disk broke" in job.errors[-1]
    assert Team.objects.get(id=created.team.id).status == "active"
    assert _state(created) == before
    owner = caller_from_token(created.owner_token)
    with on_shard("shard_1"):
        general = Channel.objects.get(team_id=created.team.id, is_general=True)
        post_message(owner, general.slack_id, text="still ours")
    # Still empty enough? No: it has a message now. Without it, a good import goes in.
    with on_shard("shard_1"):
        Message.objects.filter(team_id=created.team.id).delete()
    again = run_import(start_import(_archive(tmp_path), domain="lateco").id)
    assert again.status == "done" and again.counts["messages"] == fx.EXPECTED["messages"]


class WorkerKilled(BaseException):
    """A kill: no handler of the import runs (as when its worker dies)."""


def _break_then_die_while_undoing(job: TransferJob) -> None:
    if job.phase == "messages" and job.done >= 5:
        raise RuntimeError("the worker's disk broke")
    if job.phase == "undoing" and job.done == 1:  # the shard's rows are undone, the team not reopened
        raise WorkerKilled


def test_an_undo_cut_short_is_finished_by_the_retry_not_resumed(tmp_path: Path, settings: Any) -> None:
    """A worker that dies while undoing a failed import (after the shard's rows went back)
    leaves a job the retry undoes to the end: the team never opens half-imported."""
    settings.IMPORT_BATCH_MESSAGES = 5
    created = _empty_team("undoco")
    before = _state(created)
    job = start_import(_archive(tmp_path), domain="undoco")
    with pytest.raises(WorkerKilled):
        run_import(job.id, _break_then_die_while_undoing)
    job.refresh_from_db()
    assert job.status == "running" and "disk broke" in job.checkpoint["undoing"]
    assert job.checkpoint["members"] and job.checkpoint["conversations"]  # a resume would skip them
    assert Team.objects.get(id=created.team.id).status == "importing"
    with pytest.raises(ImportFailed, match="disk broke"):
        run_import(job.id)  # the retry
    job.refresh_from_db()
    assert job.status == "failed" and job.errors == [job.checkpoint["undoing"]]
    assert Team.objects.get(id=created.team.id).status == "active"
    assert _state(created) == before
    caller_from_token(created.owner_token)


def test_an_undo_of_a_new_team_cut_short_is_finished_by_the_retry(tmp_path: Path, settings: Any) -> None:
    settings.IMPORT_BATCH_MESSAGES = 5
    job = start_import(_archive(tmp_path), shard="shard_1")
    with pytest.raises(WorkerKilled):
        run_import(job.id, _break_then_die_while_undoing)
    assert Team.objects.get(id=job.team_id).status == "importing"
    with on_shard("shard_1"):
        assert not Member.objects.filter(team_id=job.team_id).exists()
    with pytest.raises(ImportFailed, match="disk broke"):
        run_import(job.id)
    job.refresh_from_db()
    assert job.status == "failed" and not Team.objects.filter(id=job.team_id).exists()


def test_an_archive_general_matched_by_name_keeps_the_team_general(tmp_path: Path) -> None:
    """An archive flagging no conversation general, but naming one "general", fills the
    team's #general: the team keeps a general channel (and its owner in it)."""
    created = _empty_team("flagco", "zed@elsewhere.test")
    conversations = fx.conversations()
    for channel in conversations["channels.json"]:
        channel["is_general"] = False
    job = run_import(start_import(_archive(tmp_path, **conversations), domain="flagco").id)
    assert job.status == "done", job.errors
    with on_shard("shard_1"):
        general = Channel.objects.get(team_id=created.team.id, is_general=True)
        assert (general.name, general.kind) == ("general", "public")
        assert Message.objects.filter(channel=general).count() == 21
        assert ChannelMember.objects.filter(channel=general, member_id=created.owner_id).exists()


def test_status_changes_check_the_status_they_change(tmp_path: Path) -> None:
    """Admin's disable/enable leaves a team an import took (it read the team a moment
    before); and an import finds its team changed by someone else does not reopen it."""
    created = _empty_team("raceco")
    job = start_import(_archive(tmp_path), domain="raceco")
    assert not set_team_status(created.team.id, "disabled", only_from=("active", "disabled"))
    assert Team.objects.get(id=created.team.id).status == "importing"

    def disable_before_opening(job: TransferJob) -> None:
        if job.phase == "threads":
            set_team_status(created.team.id, "disabled")  # unconditionally, as admin used to

    with pytest.raises(ImportFailed, match="the team is disabled, not importing"):
        run_import(job.id, disable_before_opening)
    assert Team.objects.get(id=created.team.id).status == "disabled"


def test_a_claim_cut_short_is_undone_by_its_job(tmp_path: Path) -> None:
    """A claim commits the team's status and its job together, then reads the team into
    the job: cut short in between (the job's "existing" still None, as here), the job's
    run reopens the team, untouched, instead of leaving it closed or importing blind."""
    created = _empty_team("cutco")
    before = _state(created)
    job = start_import(_archive(tmp_path), domain="cutco")
    job.options = {**job.options, "existing": None}  # what a claim cut short leaves
    job.save(update_fields=["options"])
    with pytest.raises(ImportFailed, match="before it had read the team"):
        run_import(job.id)
    job.refresh_from_db()
    assert job.status == "failed"
    assert Team.objects.get(id=created.team.id).status == "active"
    assert _state(created) == before
    caller_from_token(created.owner_token)
