"""Signed-in web sessions as the realtime gateway knows them. A socket opened through a
session carries a digest of the session's key (a ticket in Redis must not hold the key
itself), and signing out ends every socket of that session, in every tab and team: they
are shut out at once, and their reconnect URLs are refused from then on."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from messaging.events import publish_to_group, team_group
from teams.auth import session_digest
from teams.models import TeamMembership

logger = logging.getLogger(__name__)

SESSION_ENDED = "session.ended"  # the layer message a team's hubs act on (hub.py)


def session_ended_cache_key(digest: str) -> str:
    return f"session-ended:{digest}"


def end_session_sockets(account_id: int, session_key: str) -> None:
    """Called as the session signs out. A Redis outage does not stop the sign-out (its
    sockets then last until they drop). Only a sign-out ends them: a session that expires
    or is flushed elsewhere leaves its sockets until they drop and boot again."""
    digest = session_digest(session_key)
    try:
        # As long as a session may live: a reconnect URL is renewed for as long as its socket does.
        cache.set(session_ended_cache_key(digest), 1, settings.SESSION_COOKIE_AGE)
        for team_id in TeamMembership.objects.filter(account_id=account_id).values_list("team_id", flat=True):
            publish_to_group(team_group(team_id), {"type": SESSION_ENDED, "session": digest})
    except RedisError as exc:
        logger.warning("sockets of a signed-out session not ended: %s", exc)
