"""Web API method families; importing this package registers them all."""

from messaging.api.methods import (  # noqa: F401
    admin_transfer,
    auth_team,
    chat,
    conversations,
    reactions,
    rtm,
    search,
    users,
)
