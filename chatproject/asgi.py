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

# The cyclic collector, tuned for a process holding thousands of sockets:
# - a young pass every GC_THRESHOLDS[0] allocations (CPython: 700). A reconnect storm
#   allocates tens of thousands of objects a second, most living as long as their socket:
#   at 700 a daphne spent 1.4 s of CPU collecting in bench/reconnect.py, at 10,000 0.5 s,
#   about 10 ms a pass (50,000 saved little more, with pauses several times as long);
# - a full pass after GC_THRESHOLDS[2] middle ones (CPython: 10). A full pass stalls the
#   event loop for every socket at once: 130-280 ms for about 100,000 objects on each of
#   two daphnes holding 1,000 sockets, several times a minute at 100 posts/s, which set
#   bench/fanout.py's p99;
# - what exists now (Django, every module, the URLconf, imported eagerly here) lives as
#   long as the process: frozen out of every collection.
_ = get_resolver().url_patterns
gc.collect()
gc.freeze()
gc.set_threshold(*settings.GC_THRESHOLDS)
