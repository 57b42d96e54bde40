"""The import plan: this team's id for every person, bot and conversation of the archive,
minted once and kept in the job's checkpoint so a resumed run writes the same rows."""

from __future__ import annotations

from typing import Any

from django.db import connections

from jobs.slack_export.existing import TeamSnapshot, general_channel, matched_channels
from jobs.slack_export.import_actions import dm_key
from jobs.slack_export.manifest import IM, MPIM, PUBLIC, ExportUser, Manifest
from jobs.slack_export.messages import IdMap
from teams import ids
from teams.models import Account

_PREFIX = {PUBLIC: ids.PUBLIC, IM: ids.IM}


def mint_ids(shard: str, count: int) -> list[int]:
    if count == 0:
        return []
    with connections[shard].cursor() as cursor:
        cursor.execute("SELECT chat_next_id() FROM generate_series(1, %s)", [count])
        return [int(row[0]) for row in cursor.fetchall()]


def make_plan(
    shard: str, manifest: Manifest, owner_account_id: int | None, existing: TeamSnapshot | None = None
) -> dict[str, Any]:
    """`existing`: what an existing empty team holds (jobs.slack_export.existing); its
    owner and the channels the archive names keep their ids."""
    bots = list(dict.fromkeys(u.bot_slack_id for u in manifest.users if u.is_bot and u.bot_slack_id))
    minted = iter(mint_ids(shard, len(manifest.users) + len(bots) + len(manifest.conversations) + 1))
    plan: dict[str, Any] = {
        "users": {u.slack_id: next(minted) for u in manifest.users},
        "bots": {b: next(minted) for b in bots},
        "channels": {c.slack_id: next(minted) for c in manifest.conversations},
        "owner": None,
        "existing_channels": [],
    }
    present = existing["owner"] if existing else None
    if present is not None:
        owner_account_id = present["account_id"]
    if owner_account_id is not None:
        email = Account.objects.filter(id=owner_account_id).values_list("email", flat=True).first() or ""
        match = next((u for u in manifest.users if u.email == email and not u.deleted and not u.is_bot), None)
        if present is not None:
            member_id = present["id"]  # the team's owner stays who they are
            if match:
                plan["users"][match.slack_id] = member_id
        else:
            member_id = plan["users"][match.slack_id] if match else next(minted)
        # The importing admin owns the new team: as their archive self, or added to it.
        plan["owner"] = {
            "account_id": owner_account_id,
            "email": email,
            "slack_id": match.slack_id if match else None,
            "member_id": member_id,
            "existing": present is not None,
        }
    if existing:
        users = plan["users"]
        keys = [
            (c.slack_id, c.name or "", c.is_general,
             dm_key(users[u] for u in c.members) if c.kind in (IM, MPIM) else None)
            for c in manifest.conversations
        ]  # fmt: skip
        matched = matched_channels(existing, keys)
        plan["channels"].update(matched)
        plan["existing_channels"] = sorted(matched.values())
        plan["general_channel"] = general_channel(existing)
    return plan


def id_map(plan: dict[str, Any], manifest: Manifest) -> IdMap:
    prefixes = {c.slack_id: _PREFIX.get(c.kind, ids.PRIVATE) for c in manifest.conversations}
    return IdMap(plan["users"], plan["bots"], plan["channels"], prefixes)


def owner_user(owner: dict[str, Any]) -> ExportUser:
    """The importing admin, when the archive does not have them."""
    handle = owner["email"].split("@")[0][:80] or "owner"
    return ExportUser(
        slack_id="", name=handle, real_name="", display_name="", email=owner["email"], title="", phone="",
        tz="UTC", color="9f69e7", is_admin=True, is_owner=True, is_bot=False, bot_slack_id="", deleted=False,
        updated=0,
    )  # fmt: skip
