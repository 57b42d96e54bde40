"""API tokens: minted here, stored only as SHA-256, resolved (with a cache) per request.

A token reads `xoxp-<team>-<member>-<secret>` (user) or `xoxb-<team>-<bot>-<secret>`
(bot), so the team, and from it the shard, is known before any database is asked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from chatproject.dbrouter import CONTROL_DB
from teams.errors import ApiError
from teams.models import ApiToken

TOKEN_CACHE_SECS = 300  # revocation deletes the key at once; this bounds a missed delete
_PREFIX = {ApiToken.Kind.USER: "xoxp", ApiToken.Kind.BOT: "xoxb"}


@dataclass(frozen=True)
class TokenGrant:
    token_id: int
    team_id: int
    member_id: int
    bot_id: int | None
    kind: str


def hash_token(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    return f"tok:{key_hash}"


def issue_token(team_id: int, member_id: int, kind: str, bot_id: int | None = None) -> str:
    """Mint a token (control DB write). Returns the only copy of its text."""
    subject = bot_id if kind == ApiToken.Kind.BOT else member_id
    text = f"{_PREFIX[kind]}-{team_id}-{subject}-{secrets.token_hex(20)}"  # type: ignore[index]
    ApiToken.objects.create(
        key_hash=hash_token(text), team_id=team_id, member_id=member_id, bot_id=bot_id, kind=kind
    )
    return text


def revoke_tokens(team_id: int, member_id: int) -> int:
    """Revoke every live token of a member; returns how many."""
    tokens = list(ApiToken.objects.filter(team_id=team_id, member_id=member_id, revoked_at__isnull=True))
    ApiToken.objects.filter(id__in=[t.id for t in tokens]).update(revoked_at=timezone.now())
    keys = [_cache_key(t.key_hash) for t in tokens] + [_live_key(t.id) for t in tokens]
    cache.delete_many(keys)
    # Again once committed: a lookup between the delete and the commit read the live row
    # and cached it again.
    transaction.on_commit(lambda: cache.delete_many(keys), using=CONTROL_DB)
    return len(tokens)


def _live_key(token_id: int) -> str:
    return f"tok:live:{token_id}"


def token_live_cache_key(token_id: int) -> str:
    return _live_key(token_id)


def token_is_live(token_id: int) -> bool:
    """Not revoked (cached like grant_for: revocation deletes the key at once)."""
    if cache.get(_live_key(token_id)):
        return True
    live = ApiToken.objects.filter(id=token_id, revoked_at__isnull=True).exists()
    if live:
        cache.set(_live_key(token_id), 1, TOKEN_CACHE_SECS)
    return live


def team_id_in_token(text: str) -> int | None:
    parts = text.split("-")
    if len(parts) != 4 or parts[0] not in ("xoxp", "xoxb") or not parts[1].isdigit():
        return None
    return int(parts[1])


def grant_for(text: str, cached: dict | None) -> TokenGrant:
    """Resolve a token; `cached` is its cache value if the caller already fetched it."""
    if cached is not None:
        return TokenGrant(**cached)
    key_hash = hash_token(text)
    row = ApiToken.objects.filter(key_hash=key_hash).first()
    if row is None:
        raise ApiError("invalid_auth")
    if row.revoked_at is not None:
        raise ApiError("token_revoked")
    grant = TokenGrant(row.id, row.team_id, row.member_id, row.bot_id, row.kind)
    cache.set(_cache_key(key_hash), grant.__dict__, TOKEN_CACHE_SECS)
    return grant


def token_cache_key(text: str) -> str:
    return _cache_key(hash_token(text))
