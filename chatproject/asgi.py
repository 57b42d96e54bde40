"""ASGI entry point: HTTP through Django, websockets (the RTM gateway) through Channels."""

import gc
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from chatproject.http import PooledSyncHttpHandler  # noqa: E402

# The event loop (socket writes) and the HTTP threads hand a request back and forth several
# times; with CPython's default 5 ms switch interval each hand-off to a busy thread waits
# up to 5 ms for the GIL (bench/fanout.py, 1,000 sockets at 100 posts/s: post p50 36 -> 29 ms).
sys.setswitchinterval(settings.GIL_SWITCH_SECS)

django_http_app = PooledSyncHttpHandler(threads=settings.HTTP_THREADS)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import get_resolver, path  # noqa: E402

from messaging.realtime.consumer import RtmConsumer  # noqa: E402
from messaging.realtime.shutdown import install_shutdown_trigger  # noqa: E402

install_shutdown_trigger()

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http_app),
        # No origin check: a socket is admitted by its one-time ticket, never by cookies.
        "websocket": URLRouter([path("rtm/", RtmConsumer.as_asgi())]),
    }
)

# Full collections stall the event loop for every socket at once (1,000 sockets on two
# daphnes: 130-280 ms for about 100,000 objects, several times a minute at 100 posts/s,
# which set the fan-out's p99). What exists now (Django, every module, the URLconf) lives
# as long as the process: freeze it out of every future collection, and let full ones come
# ten times more rarely; objects that die young are still collected as before.
_ = get_resolver().url_patterns  # import every view now, so they are frozen too
gc.collect()
gc.freeze()
gc.set_threshold(*settings.GC_THRESHOLDS)
