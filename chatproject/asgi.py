"""ASGI entry point: HTTP through Django, websockets (the RTM gateway) through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from messaging.realtime.consumer import RtmConsumer  # noqa: E402
from messaging.realtime.shutdown import install_shutdown_trigger  # noqa: E402

install_shutdown_trigger()

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        # No origin check: a socket is admitted by its one-time ticket, never by cookies.
        "websocket": URLRouter([path("rtm/", RtmConsumer.as_asgi())]),
    }
)
