"""Settings: the one place that reads the environment.

Database and Redis URLs come from CHAT_* variables; when those are unset, from the
`services.json` the embedded default wrote under CHAT_DATA_DIR.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import dj_database_url

from chatproject.embedded import read_service_urls

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


DATA_DIR = Path(os.environ.get("CHAT_DATA_DIR", BASE_DIR / "var")).resolve()
PORT = int(os.environ.get("CHAT_PORT", "8000"))
# daphne processes sharing the port (one Python process uses one core at most).
WEB_PROCESSES = int(os.environ.get("CHAT_WEB_PROCESSES", str(os.cpu_count() or 1)))
DEBUG = _env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # Dev/embedded only: a random key kept with the data so sessions survive restarts.
    _key_file = DATA_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        import secrets

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]

_embedded = read_service_urls(DATA_DIR)
CONTROL_DB_URL = os.environ.get("CHAT_CONTROL_DB_URL") or (_embedded.control_db_url if _embedded else "")
_shard_env = os.environ.get("CHAT_SHARD_URLS", "")
SHARD_URLS = [u.strip() for u in _shard_env.split(",") if u.strip()] or (
    _embedded.shard_urls if _embedded else []
)
REDIS_URL = os.environ.get("CHAT_REDIS_URL") or (
    _embedded.redis_url if _embedded else "redis://127.0.0.1:6379/0"
)
USING_EMBEDDED = not os.environ.get("CHAT_CONTROL_DB_URL")

# How new teams pick a shard: "least_loaded" (fewest teams) or "round_robin"; shards
# listed in CHAT_SHARDS_CLOSED (aliases) take no new teams (full, or being retired).
SHARD_PLACEMENT = os.environ.get("CHAT_SHARD_PLACEMENT", "least_loaded")
if SHARD_PLACEMENT not in ("least_loaded", "round_robin"):
    raise ValueError(f"CHAT_SHARD_PLACEMENT must be least_loaded or round_robin, not {SHARD_PLACEMENT!r}")
SHARDS_CLOSED = [a.strip() for a in os.environ.get("CHAT_SHARDS_CLOSED", "").split(",") if a.strip()]

# Mail (invitations). Without CHAT_SMTP_HOST each message is written as a file under
# DATA_DIR/mail, so the embedded default needs no mail server.
EMAIL_HOST = os.environ.get("CHAT_SMTP_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = int(os.environ.get("CHAT_SMTP_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("CHAT_SMTP_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("CHAT_SMTP_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("CHAT_SMTP_STARTTLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "mail")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("CHAT_MAIL_FROM", "Team chat <noreply@localhost>")

# Event log retention (realtime replay window) and API rate limits.
EVENT_LOG_RETENTION_SECS = int(os.environ.get("CHAT_EVENT_LOG_RETENTION_SECS", str(7 * 24 * 3600)))
RATE_LIMITS_ENABLED = _env_bool("CHAT_RATE_LIMITS", True)
# Reverse proxies in front of daphne, each appending to X-Forwarded-For: the client's address
# is the entry this many from the right (sign-in limits count failures per address). 0: none,
# REMOTE_ADDR is the client's. Too high and a client picks its own address; too low and every
# client has the proxy's, so failures from one pause sign-in for all.
TRUSTED_PROXY_HOPS = int(os.environ.get("CHAT_TRUSTED_PROXY_HOPS", "0"))
if TRUSTED_PROXY_HOPS < 0:
    raise ValueError(f"CHAT_TRUSTED_PROXY_HOPS must be 0 or more, not {TRUSTED_PROXY_HOPS}")
# Where those proxies connect from: X-Forwarded-For is read only on a request that came
# from one of these networks (one straight to daphne names its own address there).
TRUSTED_PROXIES = [
    ipaddress.ip_network(n.strip(), strict=False)
    for n in os.environ.get(
        "CHAT_TRUSTED_PROXIES", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    ).split(",")
    if n.strip()
]
# Reconnect storms: boots (rtm.connect/start) per second per team and overall, and new
# sockets per second; a burst of one second's worth is admitted at once.
BOOT_RATE_PER_TEAM = float(os.environ.get("CHAT_BOOT_RATE_PER_TEAM", "200"))
BOOT_RATE_TOTAL = float(os.environ.get("CHAT_BOOT_RATE_TOTAL", "1000"))
SOCKET_ACCEPT_RATE = float(os.environ.get("CHAT_SOCKET_ACCEPT_RATE", "1000"))
GIL_SWITCH_SECS = float(os.environ.get("CHAT_GIL_SWITCH_SECS", "0.0005"))  # see chatproject/asgi.py
# The cyclic collector's thresholds in daphne (CPython's default: 700, 10, 10): see asgi.py.
GC_THRESHOLDS = tuple(int(n) for n in os.environ.get("CHAT_GC_THRESHOLDS", "10000,10,100").split(","))
# Sockets between handshake and live per daphne process; more are refused at once (4029 with
# a Retry-After) rather than queue past daphne's handshake timeout and all fail.
SOCKETS_CONNECTING_MAX = int(os.environ.get("CHAT_SOCKETS_CONNECTING_MAX", "1000"))
# daphne's handshake timeout (its --websocket_connect_timeout, 5 s by default): a reconnect
# storm on a busy machine queues longer than that, and every socket past it fails and retries.
WEBSOCKET_HANDSHAKE_SECS = int(os.environ.get("CHAT_WEBSOCKET_HANDSHAKE_SECS", "20"))
# The listening socket's accept queue. Twisted's default (50, daphne's -b/-p) overflows in a
# reconnect storm: the kernel drops the SYNs and clients retry after 1, 3, 7, 15 s.
LISTEN_BACKLOG = 1024
# A socket's reconnect_url admits for this long; the live socket gets a new one at half of
# it (tests shorten it to see renewals).
RTM_RECONNECT_TTL_SECS = int(os.environ.get("CHAT_RTM_RECONNECT_TTL_SECS", "180"))
# An empty team hub (and its ring of recent events) is kept this long for returning sockets.
HUB_IDLE_SECS = float(os.environ.get("CHAT_HUB_IDLE_SECS", "300"))
# Presence: away after this long without activity even with a socket open (Slack: 10 min);
# changes are batched per socket for this long before being pushed.
AUTO_AWAY_SECS = int(os.environ.get("CHAT_AUTO_AWAY_SECS", "600"))
PRESENCE_BATCH_SECS = float(os.environ.get("CHAT_PRESENCE_BATCH_SECS", "0.5"))


# Link previews: only these networks (CIDRs) may be fetched despite being internal
# (tests use it for their local upstream); a preview not ready after this long is
# dropped; at most this many fetches run against one host at once, across all workers.
UNFURL_ALLOWED_NETWORKS = [
    n.strip() for n in os.environ.get("CHAT_UNFURL_ALLOWED_NETWORKS", "").split(",") if n.strip()
]
UNFURL_MAX_AGE_SECS = int(os.environ.get("CHAT_UNFURL_MAX_AGE_SECS", "3600"))
# Per host: a quarter of one worker's threads, so a popular healthy host is not held to
# a trickle (with half of ten hosts hanging, the other five can still use every thread
# the hanging ones leave), and one host is never fetched more than this at once.
UNFURL_HOST_CONCURRENCY = int(os.environ.get("CHAT_UNFURL_HOST_CONCURRENCY", "8"))
# The preview worker's threads (a Celery threads pool: a fetch mostly waits on the
# network, so a thread is what a waiting fetch should cost, not a process). More threads
# than hanging hosts can hold past the suspect bar (UNFURL_SUSPECT_THREADS): the rest
# serve hosts that answer. In bench/unfurl.py 32 threads still leave CPU to spare; at
# 48 its process is CPU-bound, and every refused link costs a healthy host a preview.
UNFURL_WORKER_THREADS = int(os.environ.get("CHAT_UNFURL_WORKER_THREADS", "32"))
UNFURL_TOTAL_TIMEOUT_SECS = float(os.environ.get("CHAT_UNFURL_TIMEOUT_SECS", "10"))
# A call still waiting for its answer after this long (a page's answer usually starts
# well within it), or any call to a host whose last such call did, counts as suspect;
# suspect calls share this many of a worker's threads (jobs.suspect), so hosts that hang
# cannot hold every thread while their breakers judge them. A slow but healthy host is
# only held back while that pool is full. Two: what that pool holds is lost to healthy
# hosts for as long as hosts hang, and refusing a suspect host's link costs next to
# nothing (bench/unfurl.py, half of 40 hosts hanging: healthy previews 82-92% of the
# all-healthy rate with 2, 79-80% with 4; half of 10: 92-96% with 2, 90-94% with 4).
UNFURL_SUSPECT_AFTER_SECS = float(os.environ.get("CHAT_UNFURL_SUSPECT_AFTER_SECS", "1"))
UNFURL_SUSPECT_THREADS = int(os.environ.get("CHAT_UNFURL_SUSPECT_THREADS", "2"))
# Before that bar, a host none of whose calls in flight has answered since the oldest of
# them started has at most this many of them per worker (jobs.silent): a host that starts
# hanging holds this many threads for that second, not every thread that picks its links.
UNFURL_SILENT_HOST_CALLS = int(os.environ.get("CHAT_UNFURL_SILENT_HOST_CALLS", "2"))
# Of the preview worker's threads, only this many touch the databases (jobs.db_threads):
# they keep the worker's connections (see DB_POOL below).
UNFURL_DB_THREADS = int(os.environ.get("CHAT_UNFURL_DB_THREADS", "4"))
# How long a preview job waits for its database thread (queueing included) before it is
# rescheduled: longer than attach_preview's own lock (2 s) and statement (5 s) timeouts.
UNFURL_DB_WAIT_SECS = float(os.environ.get("CHAT_UNFURL_DB_WAIT_SECS", "10"))
# Retrying jobs back off exponentially from the base to the cap (seconds).
JOB_BASE_BACKOFF_SECS = float(os.environ.get("CHAT_JOB_BASE_BACKOFF_SECS", "2"))
JOB_MAX_BACKOFF_SECS = float(os.environ.get("CHAT_JOB_MAX_BACKOFF_SECS", "600"))
# A post queues jobs after commit: with Redis down it must fail fast, not wait seconds.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0

# Prometheus metrics: every process (daphne, Celery workers) writes its samples to files
# here and /metrics sums them (prometheus_client's multiprocess mode, chosen by this
# variable before any metric exists). `./run` empties it at start.
METRICS_DIR = Path(os.environ.get("CHAT_METRICS_DIR", DATA_DIR / "metrics")).resolve()
METRICS_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
# /readyz answers within this long even when a part hangs.
READY_TIMEOUT_SECS = float(os.environ.get("CHAT_READY_TIMEOUT_SECS", "1.0"))
# /metrics names the hosts members link to (breaker keys) and the load on every queue: it
# answers only to this bearer token, and to nobody while it is unset (see ops/views.py).
METRICS_TOKEN = os.environ.get("CHAT_METRICS_TOKEN", "")

# Slack export import/export: where uploaded archives and finished exports are kept,
# and the limits an archive must stay within (zip bombs: total and per-file uncompressed
# bytes, file count, compression ratio). Messages are written in batches of this many.
TRANSFER_DIR = Path(os.environ.get("CHAT_TRANSFER_DIR", DATA_DIR / "transfers")).resolve()
IMPORT_MAX_TOTAL_BYTES = int(os.environ.get("CHAT_IMPORT_MAX_TOTAL_BYTES", str(20 * 1024**3)))
IMPORT_MAX_FILE_BYTES = int(os.environ.get("CHAT_IMPORT_MAX_FILE_BYTES", str(256 * 1024**2)))
IMPORT_MAX_FILES = int(os.environ.get("CHAT_IMPORT_MAX_FILES", "1000000"))
IMPORT_MAX_RATIO = float(os.environ.get("CHAT_IMPORT_MAX_RATIO", "200"))
# An archive uploaded through the API (compressed): bounds the disk one upload can take.
# Put the same cap on request bodies in the proxy in front, which can refuse it early.
IMPORT_MAX_UPLOAD_BYTES = int(os.environ.get("CHAT_IMPORT_MAX_UPLOAD_BYTES", str(2 * 1024**3)))
IMPORT_BATCH_MESSAGES = int(os.environ.get("CHAT_IMPORT_BATCH_MESSAGES", "5000"))
# An export checkpoints after each segment of about this many messages: a killed export
# redoes at most one segment.
EXPORT_SEGMENT_MESSAGES = int(os.environ.get("CHAT_EXPORT_SEGMENT_MESSAGES", "20000"))
# A finished export's zip is kept for download this long, then deleted (beat, hourly).
EXPORT_RETENTION_SECS = int(os.environ.get("CHAT_EXPORT_RETENTION_SECS", str(7 * 24 * 3600)))
# One worker runs a transfer job at a time: its lock lapses this long after the worker
# dies; a job untouched for TRANSFER_STALLED_SECS is queued again (beat, every minute).
TRANSFER_LOCK_SECS = int(os.environ.get("CHAT_TRANSFER_LOCK_SECS", "60"))
TRANSFER_STALLED_SECS = int(os.environ.get("CHAT_TRANSFER_STALLED_SECS", "300"))

DB_POOL_MAX = int(os.environ.get("CHAT_DB_POOL_MAX", "20"))
# Threads per web process serving HTTP (chatproject/http.py). Requests mostly wait on
# the database, so a slow one (a search, a download) must not hold up the posts behind
# it; kept under DB_POOL_MAX so every thread can hold a connection to one shard.
HTTP_THREADS = int(os.environ.get("CHAT_HTTP_THREADS", "16"))
# Celery closes a pool around every task, so workers keep plain persistent connections
# instead (./run sets this), one per thread and database: a prefork process runs one task
# at a time; the preview worker's fetching threads never touch a database, and its
# UNFURL_DB_THREADS threads that do keep up to UNFURL_DB_THREADS x (1 + shards)
# connections (12 with the embedded two shards). The embedded PostgreSQL allows 300 in
# all; a server of your own needs room too.
DB_POOL = _env_bool("CHAT_DB_POOL", True)


def _pool_gave_up(pool: Any) -> None:
    # psycopg_pool could not (re)connect: a shard's server is down. Reported at once, so
    # requests waiting for a connection fail now, not at the pool timeout.
    from chatproject.shard_outage import pool_gave_up

    pool_gave_up(pool.name)


def _database(url: str, alias: str) -> dict:
    # Websocket consumers reach the database from asgiref's threads, which come and go,
    # and HTTP threads touch several shards; a process-wide pool per database reuses
    # connections across all of them.
    config = dj_database_url.parse(url, conn_max_age=0 if DB_POOL else 600, conn_health_checks=not DB_POOL)
    options = config.setdefault("OPTIONS", {})
    if DB_POOL:
        options["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_MAX,
            "timeout": 5,
            "name": alias,
            # Give up reconnecting after a blip this short (a refused connect is retried
            # once): chatproject.shard_outage then takes over, probing without the pool.
            "reconnect_timeout": 0.2,
            "reconnect_failed": _pool_gave_up,
        }
    # Fail fast when a shard's server is gone instead of hanging a worker; and notice a
    # server that vanished mid-connection (a partition sends no reset) within about a
    # minute instead of the kernel's two hours, so a thread waiting on it is let go.
    options["connect_timeout"] = 3
    options.update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
    options["tcp_user_timeout"] = 60_000
    return config


SHARD_ALIASES = [f"shard_{i}" for i in range(len(SHARD_URLS))]
DATABASES = {"default": _database(CONTROL_DB_URL, "default")} if CONTROL_DB_URL else {}
for _alias, _url in zip(SHARD_ALIASES, SHARD_URLS, strict=True):
    DATABASES[_alias] = _database(_url, _alias)
DATABASE_ROUTERS = ["chatproject.dbrouter.ShardRouter"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "teams",
    "messaging",
    "presence",
    "jobs",
    "ops",
]

MIDDLEWARE = [
    "ops.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatproject.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"
AUTH_USER_MODEL = "teams.Account"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "chat",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
            # A cache outage must degrade to the database, not fail requests.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer never drops group messages at a capacity limit (DESIGN.md).
        "BACKEND": "chatproject.layers.SharedDecodePubSubLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "chat"},
    }
}

# Sessions are read on every browser API call: Redis first, the control DB behind it (and
# alone while Redis is out, since the cache ignores its errors).
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
LOGIN_URL = "sign_in"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A drain that has not let go of the work it took (jobs.pending) by then is presumed dead:
# far longer than a batch takes, short next to how stale an index or a preview may get.
PENDING_LEASE_SECS = float(os.environ.get("CHAT_PENDING_LEASE_SECS", "300"))
# A job taken by a worker that dies without a word (killed, machine lost) is handed out
# again after this long. It must exceed the longest job plus the longest retry countdown
# (a countdown is held unacknowledged too), or a job runs twice at once.
JOB_VISIBILITY_SECS = int(os.environ.get("CHAT_JOB_VISIBILITY_SECS", str(6 * 3600)))
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": JOB_VISIBILITY_SECS}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "prune-event-logs": {"task": "jobs.prune_event_logs", "schedule": 3600.0},
    "sweep-presence": {"task": "presence.sweep", "schedule": 30.0},
    "resume-transfers": {"task": "jobs.resume_transfers", "schedule": 60.0},
    "prune-exports": {"task": "jobs.prune_exports", "schedule": 3600.0},
    "reclaim-pending": {"task": "jobs.reclaim_pending", "schedule": 60.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
