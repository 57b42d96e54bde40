"""Web API method families; importing this package registers them all."""

from messaging.api.methods import auth_team, chat, conversations, reactions, rtm, search, users  # noqa: F401
