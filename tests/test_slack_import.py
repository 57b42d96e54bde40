"""Importing a Slack export: members, conversations, messages with their subtypes,
threads, reactions, pins, the report of skipped items, and the team kept invisible
until the import completes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export import importer, progress
from jobs.slack_export.importer import run_import
from jobs.slack_export.reserve import start_import
from jobs.slack_export.seen_ts import SeenTs
from jobs.slack_export.writer import day_of
from messaging.models import Channel, ChannelMember, Event, Message, Pin, Reaction
from teams import ids
from teams.actions import create_member
from teams.directory import team_entry
from teams.models import Account, Bot, Member, Team, TeamMembership
from tests import slack_fixtures as fx

pytestmark = pytest.mark.django_db(databases="__all__")


def _import(path: Path, **options: object) -> TransferJob:
    job = start_import(path, shard="shard_1", **options)  # type: ignore[arg-type]
    return run_import(job.id)


def _ts(text: str) -> int:
    return ids.parse_ts(text)


@pytest.fixture
def imported(tmp_path: Path) -> TransferJob:
    # bob already signs in here: the import must not hand his account to the archive.
    Account.objects.create_user("bob@old.test", "pw")
    return _import(fx.write_zip(tmp_path / "acme-old.zip", fx.export_files()), domain="acme-old")


def test_counts_match_the_archive_and_the_report_lists_skips(imported: TransferJob) -> None:
    assert (imported.status, imported.phase, imported.done, imported.total) == ("done", "done", 29, 29)
    assert imported.counts == fx.EXPECTED
    assert len(imported.skipped) == 4
    report = "\n".join(imported.skipped)
    assert "reaction :+1: by unknown user U99NOPE" in report
    assert "type 'not_a_message'" in report
    assert "without a valid ts" in report
    assert "pinned message not in the archive" in report
    team = Team.objects.get(id=imported.team_id)
    assert (team.status, team.domain, team.shard) == ("active", "acme-old", "shard_1")


def test_a_long_report_keeps_its_first_entries_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "MAX_SKIPPED_KEPT", 2)
    job = _import(fx.write_zip(tmp_path / "x.zip", fx.export_files()))
    assert job.counts == fx.EXPECTED
    assert len(job.skipped) == 3 and job.skipped[2] == "... and 2 more"
    assert "reaction :+1: by unknown user U99NOPE" in job.skipped[0]


def test_members_accounts_profiles_and_roles(imported: TransferJob) -> None:
    team_id = imported.team_id
    with on_shard("shard_1"):
        members = {m.name: m for m in Member.objects.filter(team_id=team_id)}
        bot = Bot.objects.get(team_id=team_id)
    alice, bob, gone, deploy = members["alice"], members["bob"], members["gone"], members["deploybot"]
    assert (alice.is_owner, alice.is_admin, alice.tz, alice.title) == (True, True, "Europe/Berlin", "Boss")
    assert members["carol"].is_admin and not members["carol"].is_owner
    # Anyone may write bob's email into an archive: his member waits for him to claim it.
    assert bob.account_id is None and bob.email == "bob@old.test"
    assert Account.objects.filter(email="alice@old.test").exists()
    assert (gone.deleted, gone.account_id, gone.real_name) == (True, None, "Gone Person")
    assert (deploy.is_bot, deploy.bot_id, bot.member_id) == (True, bot.id, deploy.id)
    memberships = TeamMembership.objects.filter(team_id=team_id)
    assert sorted(m.account.email for m in memberships) == ["alice@old.test", "carol@old.test"]


def test_an_existing_account_claims_its_imported_member_by_invitation(imported: TransferJob) -> None:
    from teams.actions import create_member
    from teams.directory import team_entry

    with on_shard("shard_1"):
        before = Member.objects.get(team_id=imported.team_id, name="bob")
    # What accepting an invitation does once bob has proved his password.
    member, _token = create_member(team_entry(imported.team_id), "bob@old.test", password=None)
    assert member.id == before.id  # his imported history, not a second bob
    account = Account.objects.get(email="bob@old.test")
    assert account.check_password("pw")  # nobody's password is touched
    with on_shard("shard_1"):
        assert Member.objects.get(id=before.id).account_id == account.id
        assert Member.objects.filter(team_id=imported.team_id, email="bob@old.test").count() == 1
        assert Event.objects.filter(team_id=imported.team_id, type="user_change").exists()
    assert TeamMembership.objects.filter(
        team_id=imported.team_id, account=account, member_id=before.id
    ).exists()


def test_an_account_the_import_made_is_claimed_by_invitation_with_a_new_password(
    imported: TransferJob,
) -> None:
    """Nobody ever signed in to the account an import made for an email in its archive:
    the invitation emailed to that address sets its password, instead of asking for one
    that does not exist (which locked the person out of every team). The admin's copy of
    an invitation cannot (it would hand the account, and its history in the importing
    team, to whoever invited it). Once it has a password, that has to be given."""
    from django.test import RequestFactory

    from teams.actions import create_team
    from teams.directory import team_entry
    from teams.errors import ApiError
    from teams.invites import Invite, accept_invite

    made = Account.objects.get(email="carol@old.test")
    assert not made.has_usable_password()
    team = team_entry(create_team("newco", "NewCo", "boss@new.test", shard="shard_0").team.id)
    request = RequestFactory().post("/")
    with pytest.raises(ApiError, match="emailed to it"):
        accept_invite(request, Invite(team, "carol@old.test"), "Mallory", "the admin's guess")
    assert not Account.objects.get(id=made.id).has_usable_password()
    emailed = Invite(team, "carol@old.test", may_claim=True)
    claimed = accept_invite(request, emailed, "Carol", "a new password")
    assert claimed.id == made.id and Account.objects.get(id=made.id).check_password("a new password")
    with pytest.raises(ApiError, match="already has an account"):
        accept_invite(request, emailed, "Carol", "someone else's guess")


def test_conversations_kinds_topics_and_members(imported: TransferJob) -> None:
    with on_shard("shard_1"):
        channels = Channel.objects.filter(team_id=imported.team_id)
        by_kind = {(c.kind, c.name): c for c in channels}
        general = by_kind[("public", "general")]
        assert general.is_general and general.created == 1500000000
        assert (general.topic, general.purpose, general.purpose_last_set) == (
            "Company-wide",
            "Everyone",
            1500000002,
        )
        assert by_kind[("public", "old-stuff")].is_archived
        assert ("private", "secret") in by_kind
        assert len(channels.get(kind="mpim").dm_key.split("-")) == 3
        dm = channels.get(kind="im")
        assert len(dm.dm_key.split("-")) == 2
        assert ChannelMember.objects.filter(channel=general).count() == 3
        # The folder named after random's old name landed in random.
        random = by_kind[("public", "random")]
        assert Message.objects.filter(channel=random).count() == 2
        assert general.last_ts == _ts(fx.ts(3, 1))


def test_messages_keep_ts_subtypes_and_rewrite_mentions(imported: TransferJob) -> None:
    with on_shard("shard_1"):
        general = Channel.objects.get(team_id=imported.team_id, name="general")
        random = Channel.objects.get(team_id=imported.team_id, name="random")
        members = dict(Member.objects.filter(team_id=imported.team_id).values_list("name", "id"))
        messages = {m.ts: m for m in Message.objects.filter(channel=general)}
    first = messages[_ts(fx.ts(1))]
    bob_ref = ids.encode(ids.USER, members["bob"])
    assert first.text == f"hello <@{bob_ref}> see <#{random.slack_id}|random>"
    assert first.mentions == [members["bob"]] and first.client_msg_id == "c-1"
    assert messages[_ts(fx.ts(2))].subtype == "channel_join"
    bot_message = messages[_ts(fx.ts(5))]
    assert (bot_message.subtype, bot_message.text, bot_message.user_id) == ("bot_message", "", None)
    assert bot_message.bot_id is not None and bot_message.attachments[0]["fallback"] == "Deployed v1"
    assert messages[_ts(fx.ts(6))].files[0]["url_private"] == "https://files.slack.com/plan.png"
    assert messages[_ts(fx.ts(7))].files[0]["id"] == "F01"  # the old single `file`
    assert messages[_ts(fx.ts(8))].extra["comment"]["comment"] == "nice"
    edited = messages[_ts(fx.ts(9))]
    assert (edited.edited_ts, edited.edited_by) == (_ts(fx.ts(20)), members["alice"])
    feed = messages[_ts(fx.ts(10))]
    assert (feed.user_id, feed.username, feed.extra["bot_id"]) == (None, "rss", "B99GONE")
    assert messages[_ts(fx.ts(11))].extra == {"user": "USLACKBOT"}
    assert messages[_ts(fx.ts(12))].is_deleted
    assert messages[_ts(fx.ts(15))].blocks[0]["type"] == "rich_text"
    assert messages[_ts(fx.ts(18))].user_id == members["gone"]
    assert messages[_ts(fx.ts(3, 1))].mentions_all


def test_system_messages_name_people_by_their_new_ids(tmp_path: Path, api) -> None:
    """Who added someone (inviter), the people and channels a new topic or purpose names and
    a file comment's author are the team's new ids, as the messages' text has them."""
    Account.objects.create_user("bob@old.test", "pw")  # to read the history as bob
    files = fx.export_files()
    topic = f"ask <@{fx.CAROL}> in <#{fx.GENERAL}>"

    def said(n: int, user: str, text: str, subtype: str, **fields: object) -> dict[str, object]:
        return {
            "type": "message",
            "ts": fx.ts(n, 2),
            "user": user,
            "text": text,
            "subtype": subtype,
            **fields,
        }

    files["random/2017-07-16.json"] += [
        said(2, fx.BOB, f"<@{fx.BOB}> has joined the channel", "channel_join", inviter=fx.ALICE),
        said(3, fx.ALICE, f"set the channel topic: {topic}", "channel_topic", topic=topic),
        said(4, fx.ALICE, f"set the channel purpose: <@{fx.BOB}>", "channel_purpose", purpose=f"<@{fx.BOB}>"),
        said(
            5,
            fx.BOB,
            "",
            "file_comment",
            file=fx.FILE,
            comment={"comment": f"<@{fx.ALICE}>!", "user": fx.BOB},
        ),
    ]
    job = _import(fx.write_zip(tmp_path / "x.zip", files), domain="renumbered")
    assert job.status == "done", job.skipped
    with on_shard("shard_1"):
        members = dict(Member.objects.filter(team_id=job.team_id).values_list("name", "id"))
        channels = {c.name: c.slack_id for c in Channel.objects.filter(team_id=job.team_id)}
    new = {name: ids.encode(ids.USER, members[name]) for name in ("alice", "bob", "carol")}
    _, bob = create_member(team_entry(job.team_id), "bob@old.test", password=None)
    history = api("conversations.history", bob, channel=channels["random"])["messages"]
    joined, topic_set, purpose_set, commented = (m for m in history[::-1] if m["ts"] > fx.ts(1, 2))
    assert (joined["subtype"], joined["inviter"]) == ("channel_join", new["alice"])
    new_topic = f"ask <@{new['carol']}> in <#{channels['general']}>"
    assert (topic_set["text"], topic_set["topic"]) == (f"set the channel topic: {new_topic}", new_topic)
    assert purpose_set["purpose"] == f"<@{new['bob']}>"
    assert commented["comment"] == {"comment": f"<@{new['alice']}>!", "user": new["bob"]}


def test_threads_reactions_and_pins(imported: TransferJob) -> None:
    with on_shard("shard_1"):
        general = Channel.objects.get(team_id=imported.team_id, name="general")
        members = dict(Member.objects.filter(team_id=imported.team_id).values_list("id", "name"))
        parent = Message.objects.get(channel=general, ts=_ts(fx.ts(3)))
        tombstone = Message.objects.get(channel=general, ts=_ts(fx.ts(12)))
        reactions = list(Reaction.objects.filter(team_id=imported.team_id).order_by("id"))
        pins = sorted(Pin.objects.filter(channel=general).values_list("message__ts", "pinned_by"))
    # Replies from both day files, the broadcast included.
    assert (parent.thread_ts, parent.reply_count, parent.latest_reply) == (parent.ts, 3, _ts(fx.ts(1, 1)))
    assert [members[u] for u in parent.reply_users] == ["bob", "carol"]
    assert (tombstone.reply_count, tombstone.is_deleted) == (1, True)
    assert [(r.name, members[r.member_id]) for r in reactions] == [
        ("clap::skin-tone-3", "bob"),
        ("clap::skin-tone-3", "carol"),
        ("eyes", "bob"),
    ]
    by_name = {v: k for k, v in members.items()}
    assert pins == [(_ts(fx.ts(1)), by_name["bob"]), (_ts(fx.ts(14)), by_name["carol"])]


def test_one_event_records_the_import(imported: TransferJob) -> None:
    with on_shard("shard_1"):
        events = list(Event.objects.filter(team_id=imported.team_id).values_list("type", flat=True))
    assert events == ["team_imported"]


def test_unpacked_folder_and_rerun_are_idempotent(tmp_path: Path) -> None:
    folder = fx.write_folder(tmp_path / "export", fx.export_files())
    job = _import(folder)
    assert job.counts == fx.EXPECTED
    # Running the whole job again from scratch (as a lost checkpoint would) adds nothing.
    job.status, job.checkpoint = "running", {"plan": job.checkpoint["plan"]}
    job.save()
    again = run_import(job.id)
    assert again.counts == fx.EXPECTED


def test_importing_team_is_invisible_until_done(tmp_path: Path) -> None:
    job = start_import(fx.write_zip(tmp_path / "x.zip", fx.export_files()), domain="hidden")
    assert Team.objects.get(id=job.team_id).status == "importing"
    assert job.status == "queued"


def test_format_variations(tmp_path: Path) -> None:
    """Older and odder exports: org_users.json, channels without members or topic, numeric
    and float `created`, a numeric `ts`, DM folders named by id, no optional files."""
    files = fx.export_files()
    files["org_users.json"] = files.pop("users.json")
    for name in ("groups.json", "mpims.json", "integration_logs.json"):
        files.pop(name)
    for folder in ("secret/2017-07-14.json", f"{fx.MPIM_NAME}/2017-07-14.json"):
        files.pop(folder)
    old = files["channels.json"][2]
    for key in ("members", "topic", "purpose", "creator"):
        old.pop(key)
    old["created"] = 1400000000.5
    files["old-stuff/2014-05-13.json"][0]["ts"] = 1400000000.0001
    job = _import(fx.write_zip(tmp_path / "odd.zip", files))
    assert job.status == "done"
    assert job.counts["members"] == 5 and job.counts["channels"] == 4
    assert job.counts["messages"] == fx.EXPECTED["messages"] - 3
    with on_shard("shard_1"):
        archived = Channel.objects.get(team_id=job.team_id, name="old-stuff")
        assert (archived.created, archived.topic, archived.creator_id) == (1400000000, "", None)
        assert Message.objects.get(channel=archived).ts == 1400000000_000100


class _Recorded(SeenTs):
    """SeenTs, noting the most ts it held in memory and whether it went to disk."""

    most_held, spilled_any = 0, False

    def add_file(self, index: int, day: str, stamps: Iterable[int]) -> int | None:
        repeated = super().add_file(index, day, stamps)
        _Recorded.most_held = max(_Recorded.most_held, self.held)
        _Recorded.spilled_any = _Recorded.spilled_any or self.spilled
        return repeated


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> type[_Recorded]:
    monkeypatch.setattr(importer, "SeenTs", _Recorded)
    monkeypatch.setattr(_Recorded, "most_held", 0)
    monkeypatch.setattr(_Recorded, "spilled_any", False)
    return _Recorded


def _messages_of_day(day: int, count: int) -> list[dict[str, str]]:
    return [
        {"type": "message", "ts": fx.ts(n, day), "user": fx.BOB, "text": "hi"} for n in range(1, count + 1)
    ]


def test_the_check_holds_one_day_of_a_conversation_not_its_history(
    tmp_path: Path, recorded: type[_Recorded]
) -> None:
    """However many days a conversation has, its duplicate check keeps one day's ts in
    memory (days each newer than the one before, as Slack writes them)."""
    files = fx.export_files()
    for day in range(3, 63):  # two months of #random, 30 messages a day
        files[f"random/{day_of(fx.ts(1, day))}.json"] = _messages_of_day(day, 30)
    job = _import(fx.write_zip(tmp_path / "long.zip", files))
    assert job.status == "done" and job.counts["messages"] == fx.EXPECTED["messages"] + 60 * 30
    assert (recorded.most_held, recorded.spilled_any) == (30, False)


def test_a_message_filed_under_another_day_is_still_imported(
    tmp_path: Path, recorded: type[_Recorded]
) -> None:
    """Out of date order (an earlier day's message in a later day's file), the check
    looks back through the earlier days on disk: a new ts is no duplicate."""
    files = fx.export_files()
    files["general/2017-07-15.json"].append(
        {"type": "message", "ts": fx.ts(0), "user": fx.BOB, "text": "late"}
    )
    files["general/2017-07-16.json"] = _messages_of_day(2, 3)
    job = _import(fx.write_zip(tmp_path / "late.zip", files))
    assert job.status == "done" and job.counts["messages"] == fx.EXPECTED["messages"] + 4
    assert recorded.spilled_any
    with on_shard("shard_1"):
        late = Message.objects.get(team_id=job.team_id, ts=_ts(fx.ts(0)))
        assert (late.channel.name, late.text) == ("general", "late")


def test_a_late_failure_never_discards_an_opened_team(imported: TransferJob) -> None:
    """A worker that dies after the team opened, then fails on its re-run, must not
    delete the live team (discard is for imports still invisible)."""
    from jobs.slack_export.import_actions import discard_import

    discard_import(imported.team_id, "shard_1")
    assert Team.objects.get(id=imported.team_id).status == "active"
    assert TeamMembership.objects.filter(team_id=imported.team_id).count() == 2
    with on_shard("shard_1"):
        assert Message.objects.filter(team_id=imported.team_id).exists()


def test_jobs_in_django_admin(imported: TransferJob, client: object) -> None:
    client.force_login(Account.objects.create_superuser("root@staff.test", "pw"))  # type: ignore[attr-defined]
    listing = client.get("/admin/jobs/transferjob/")  # type: ignore[attr-defined]
    assert listing.status_code == 200 and b"acme-old" in listing.content
    page = client.get(f"/admin/jobs/transferjob/{imported.id}/change/")  # type: ignore[attr-defined]
    assert page.status_code == 200 and b"reaction :+1: by unknown user U99NOPE" in page.content
