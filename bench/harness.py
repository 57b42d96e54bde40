"""Shared machinery of the realtime benchmarks (fanout.py, boot.py, reconnect.py).

- Services: the embedded PostgreSQL and Redis under a data dir of the bench's own
  (started unless already running, migrated, and stopped again if this run started them).
- daphne processes against that data dir, with per-token rate limits off
  (CHAT_RATE_LIMITS=0) and the boot/socket admission rates the bench chooses.
- Teams built in bulk with the ORM: teams.actions.create_team for the team, then
  bulk_create of members, channels and memberships on the team's shard; tokens through
  teams.tokens.issue_token. Bulk rows append no events, so boot_version is bumped after.
- RTM receivers: bench/light_ws.py clients (an asyncio Protocol each, on uvloop: frames parsed from
  the receive buffer, no per-frame task), many sockets per process, in a few processes
  (multiprocessing, spawn) driven over pipes. With `sample_every` N, only every Nth
  socket JSON-parses and times each frame; the others find the event id and the run's
  tag in the raw bytes and count, so the client's CPU is not what limits a fan-out.

HTTP calls reuse bench/post_path.py's ApiClient, CPU sampling its ServerProbe, and
PostgreSQL counters its db_counters.

Every bench here only talks to 127.0.0.1 and stops whatever it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.light_ws import LightWebsocket  # noqa: E402
from bench.post_path import ApiClient, ServerProbe, db_counters, percentile, post_message_text  # noqa: E402

# Re-exported from post_path for the benches that import only this module.
__all__ = ["ApiClient", "ServerProbe", "db_counters", "percentile"]

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "chat-bench-rtm"
ADMISSION_FLAGS = {
    "boot-rate-per-team": "CHAT_BOOT_RATE_PER_TEAM",
    "boot-rate-total": "CHAT_BOOT_RATE_TOTAL",
    "socket-accept-rate": "CHAT_SOCKET_ACCEPT_RATE",
}
OPEN_ADMISSION = 100_000.0  # per second: admission never limits the bench
DAPHNE_START_SECS = 60.0
MIGRATE_TIMEOUT_SECS = 600.0
STATS_SETTLE_SECS = 1.1  # PostgreSQL backends flush their statistics at most once a second
SOCKET_OPEN_SECS = 30.0
REPLY_TIMEOUT_SECS = 600.0


# ---------------------------------------------------------------------------- small helpers


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def quantiles_ms(values_secs: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) in milliseconds of durations given in seconds."""
    ordered = sorted(v * 1000 for v in values_secs)
    return percentile(ordered, 0.5), percentile(ordered, 0.99), percentile(ordered, 1.0)


def on_sigterm_exit() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class Hist:
    """A latency histogram in milliseconds: 0.1 ms buckets below 100 ms, 10 ms above.

    Small enough to ship between processes whatever the spread; merged by adding.
    """

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    @staticmethod
    def key(ms: float) -> int:
        ms = max(0.0, ms)
        return int(ms * 10) if ms < 100 else 1000 + int((ms - 100) / 10)

    @staticmethod
    def value(key: int) -> float:
        return key / 10 + 0.05 if key < 1000 else 100 + (key - 1000) * 10 + 5

    def add(self, ms: float) -> None:
        self.counts[self.key(ms)] += 1

    def merge(self, other: dict[int, int]) -> None:
        self.counts.update(other)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float:
        total = self.total
        if not total:
            return float("nan")
        rank = max(1, math.ceil(q * total))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return self.value(key)
        return self.value(max(self.counts))


# ---------------------------------------------------------------------------- services and servers


def add_server_args(parser: argparse.ArgumentParser, daphnes: int) -> None:
    group = parser.add_argument_group("servers")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CHAT_BENCH_DATA_DIR", DEFAULT_DATA_DIR)),
        help="CHAT_DATA_DIR of the bench's own PostgreSQL and Redis (default %(default)s)",
    )
    group.add_argument("--daphnes", type=int, default=daphnes, help="daphne processes to start")
    group.add_argument(
        "--product-admission",
        action="store_true",
        help="run daphne with the product's boot/socket admission defaults (200/s per team, "
        "1000/s in total, 1000 sockets/s) instead of effectively unlimited admission",
    )
    for flag, env in ADMISSION_FLAGS.items():
        group.add_argument(f"--{flag}", type=float, help=f"set {env} for the daphnes (per second)")


def admission_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The admission rates given on the command line, as daphne environment."""
    found = {}
    for flag, env in ADMISSION_FLAGS.items():
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            found[env] = f"{value:g}"
    return found


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """Services of one data dir plus the daphne processes serving them; `with` stops them all."""

    data_dir: Path
    daphne_count: int
    product_admission: bool = False
    admission: dict[str, str] = field(default_factory=dict)  # explicit CHAT_*_RATE values
    started_services: list[str] = field(default_factory=list)
    daphnes: list[Daphne] = field(default_factory=list)
    external: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, daphnes: int | None = None) -> Cluster:
        """The cluster add_server_args' options describe (`daphnes` overrides --daphnes)."""
        count = args.daphnes if daphnes is None else daphnes
        return cls(args.data_dir, count, args.product_admission, admission_overrides(args))

    def __enter__(self) -> Cluster:
        on_sigterm_exit()
        raise_fd_limit()
        self.data_dir = self.data_dir.resolve()
        os.environ["CHAT_DATA_DIR"] = str(self.data_dir)
        try:
            self._start_services()
            setup_django()
            for _ in range(self.daphne_count):
                self._start_daphne()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        print(f"servers: {self.describe()}; data dir {self.data_dir}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_daphnes()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if self.started_services:
            from chatproject import embedded

            embedded.stop(self.data_dir, self.started_services)
            print(f"stopped {', '.join(self.started_services)} of {self.data_dir}", flush=True)
            self.started_services = []

    def _stop_daphnes(self) -> None:
        for server in self.daphnes:
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.daphnes:
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        self.daphnes = []

    def restart_daphnes(self) -> None:
        """Fresh daphne processes on the same ports: nothing left over from an earlier run."""
        ports = [d.port for d in self.daphnes]
        self._stop_daphnes()
        for port in ports:
            self._start_daphne(port, restart=True)

    @property
    def admission_env(self) -> dict[str, str]:
        base = (
            {} if self.product_admission else {env: f"{OPEN_ADMISSION:g}" for env in ADMISSION_FLAGS.values()}
        )
        return {**base, **self.admission}

    @property
    def server_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CHAT_DATA_DIR": str(self.data_dir),
            "CHAT_RATE_LIMITS": "0",
            "CHAT_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            **self.admission_env,
        }

    def describe(self) -> str:
        admission = (
            "product admission defaults (boot 200/s per team, 1000/s total; 1000 sockets/s)"
            if self.product_admission
            else f"admission {OPEN_ADMISSION:g}/s (boot per team, boot total, socket accepts)"
        )
        if self.admission:
            admission += ", except " + ", ".join(f"{k}={v}" for k, v in self.admission.items())
        ports = ", ".join(str(d.port) for d in self.daphnes)
        return f"{len(self.daphnes)} daphne on 127.0.0.1:{ports}; CHAT_RATE_LIMITS=0; {admission}"

    def _start_services(self) -> None:
        self.external = bool(os.environ.get("CHAT_CONTROL_DB_URL"))
        if not self.external:
            from chatproject import embedded

            urls, self.started_services = embedded.ensure_running(self.data_dir)
            embedded.ensure_databases([urls.control_db_url, *urls.shard_urls])
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate_all"],
            cwd=ROOT,
            env=self.server_env,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT_SECS,
        )
        if done.returncode != 0:
            raise SystemExit(f"migrate_all failed:\n{done.stderr[-3000:]}")

    def _start_daphne(self, port: int = 0, restart: bool = False) -> Daphne:
        """Start one daphne (listed in self.daphnes at once, so __exit__ stops it whatever happens)."""
        from django.conf import settings

        port = port or free_port()
        deadline = time.monotonic() + DAPHNE_START_SECS
        while port_answers(port) and time.monotonic() < deadline:  # the old one is still going
            time.sleep(0.1)
        logs = self.data_dir / "bench-logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"daphne-{port}.log"
        with log.open("ab" if restart else "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chatproject.daphne_uvloop",
                    # Listening as ./run does (its backlog, not Twisted's default of 50).
                    "-e",
                    f"tcp:port={port}:interface=127.0.0.1:backlog={settings.LISTEN_BACKLOG}",
                    "--websocket_connect_timeout",
                    str(settings.WEBSOCKET_HANDSHAKE_SECS),
                    "chatproject.asgi:application",
                ],
                cwd=ROOT,
                env=self.server_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Daphne(port, process, log)
        self.daphnes.append(server)  # stopped by __exit__ even if it never answers
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"daphne exited during start:\n{log.read_text()[-2000:]}")
            if port_answers(port):
                return server
            time.sleep(0.1)
        raise SystemExit(f"daphne did not answer on {port} within {DAPHNE_START_SECS:g} s")

    def check_daphnes(self) -> list[str]:
        """Problems seen in the daphne logs (tracebacks, timeouts), one line each."""
        found = []
        for server in self.daphnes:
            text = server.log.read_text(errors="replace") if server.log.exists() else ""
            for line in text.splitlines():
                if any(w in line for w in ("Traceback", "ERROR", "timed out", "took too long")):
                    found.append(f"daphne:{server.port}: {line.strip()[:160]}")
            if server.process.poll() is not None:
                found.append(f"daphne:{server.port} exited with {server.process.returncode}")
        return found

    def probe(self) -> ServerProbe:
        """CPU sampler for this cluster's daphne processes, PostgreSQL and Redis."""
        from django.conf import settings

        db_ports = {int(db.get("PORT") or 5432) for db in settings.DATABASES.values()}
        redis_port = urlsplit(settings.REDIS_URL).port
        probe = ServerProbe(self.daphnes[0].port, db_ports, redis_port)
        for server in self.daphnes[1:]:
            probe.groups["daphne"] += ServerProbe(server.port, set(), None).groups["daphne"]
        probe.groups["celery"] = []  # the benches run no Celery worker
        return probe


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()


def setup_embedded_django(data_dir: Path) -> None:
    """For benches run in this process: the embedded services of `data_dir` (started if
    need be, stopped at exit if this started them), migrated, and Django set up."""
    import atexit

    from chatproject import embedded

    urls, started = embedded.ensure_running(data_dir)
    embedded.ensure_databases([urls.control_db_url, *urls.shard_urls])
    atexit.register(embedded.stop, data_dir, started)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate_all"], check=True, cwd=ROOT)
    setup_django()


class CpuMeter:
    """CPU % of one core per process group over an interval: the server's (ServerProbe)
    and the bench's own (this process and its receivers)."""

    def __init__(self, probe: ServerProbe, client_pids: list[int]) -> None:
        self.probe = probe
        self.client = [psutil.Process(os.getpid())] + [psutil.Process(p) for p in client_pids]

    def _client_secs(self) -> float:
        total = 0.0
        for process in self.client:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        self.wall = time.monotonic()
        self.before = self.probe.cpu_seconds()
        self.before["bench"] = self._client_secs()

    def stop(self) -> dict[str, float]:
        after = self.probe.cpu_seconds()
        after["bench"] = self._client_secs()
        wall = max(1e-6, time.monotonic() - self.wall)
        pct = {k: (after[k] - self.before.get(k, 0.0)) / wall * 100 for k in after}
        pct["other"] = pct["machine"] - sum(v for k, v in pct.items() if k != "machine")
        return pct


def format_cpu(pct: dict[str, float]) -> str:
    order = ["daphne", "postgres", "redis", "bench", "other", "machine"]
    return "  ".join(f"{k} {pct[k]:.0f}%" for k in order if k in pct)


# ---------------------------------------------------------------------------- teams in bulk


@dataclass(frozen=True)
class BenchTeam:
    team_id: int
    slack_id: str
    domain: str
    shard: str
    owner_id: int
    owner_token: str


@dataclass(frozen=True)
class ChannelSpec:
    name: str | None
    kind: str  # messaging.models.Channel.Kind value
    member_ids: list[int]
    creator_id: int | None = None
    is_general: bool = False
    dm_key: str | None = None


def create_bench_team(label: str) -> BenchTeam:
    """A fresh team (owner, bot, #general, #random) through teams.actions.create_team."""
    from teams.actions import create_team

    domain = f"{label}-{secrets.token_hex(4)}"
    created = create_team(domain, f"Bench {label}", f"owner@{domain}.test")
    return BenchTeam(
        created.team.id,
        created.team.slack_id,
        domain,
        created.team.shard,
        created.owner_id,
        created.owner_token,
    )


def mint_ids(alias: str, count: int) -> list[int]:
    """`count` fresh row ids from the database's own chat_next_id().

    bulk_create cannot return ids that come from a db_default, so the bench asks for
    them first and inserts them explicitly.
    """
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT chat_next_id() FROM generate_series(1, %s)", [count])
        return [int(row[0]) for row in cursor.fetchall()]


FIRST_NAMES = (
    "Ada Alan Barbara Brian Carla Chen Dana Diego Elena Emeka Fatima Farid Grace Gustav Hana Hugo "
    "Ines Ivan Jana Jorge Kemal Kira Lena Luis Maya Mateo Nadia Noah Olga Omar Priya Pavel Quinn "
    "Rosa Ravi Sara Sven Tara Tomas Uma Umar Vera Victor Wen Will Xena Yusuf Yara Zoe Zhang"
).split()
LAST_NAMES = (
    "Abe Baker Costa Diaz Evans Fischer Garcia Hansen Ito Jensen Kowalski Lopez Moreau Nakamura "
    "Okafor Petrov Quist Rossi Singh Tanaka Ueda Varga Weber Xu Yilmaz Zimmermann Novak Silva "
    "Haddad Kim Murphy Nguyen Olsen Park Reyes Schmidt Torres Walsh Young"
).split()
TITLES = ("", "", "Engineer", "Designer", "Product Manager", "Support", "Sales", "Data Scientist", "SRE")
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata")


def add_members(team: BenchTeam, count: int, batch: int = 2000) -> list[int]:
    """`count` members without accounts (token-only), in bulk; returns their ids in order."""
    from django.db import transaction

    from chatproject.dbrouter import on_shard
    from teams.models import Member

    now = int(time.time())
    ids = mint_ids(team.shard, count)
    rng = random.Random(count)
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                handle = f"{first}.{last}{i}".lower()
                rows.append(
                    Member(
                        id=ids[i],
                        team_id=team.team_id,
                        name=handle,
                        real_name=f"{first} {last}",
                        display_name=first if i % 3 else "",
                        email=f"{handle}@{team.domain}.test",
                        title=rng.choice(TITLES),
                        tz=rng.choice(TIMEZONES),
                        # Real avatars carry a hash: incompressible, as in a real boot payload.
                        avatar_hash=f"{rng.getrandbits(128):032x}",
                        color=f"{rng.getrandbits(24):06x}",
                        updated=now - rng.randrange(86400 * 365),
                    )
                )
            Member.objects.bulk_create(rows)
    return ids


def add_channels(team: BenchTeam, specs: list[ChannelSpec], batch: int = 5000) -> list[int]:
    """Channels and their memberships in bulk; returns the channel ids in spec order."""
    from django.db import transaction

    from chatproject.dbrouter import on_shard
    from messaging.models import Channel, ChannelMember

    now = int(time.time())
    ids = mint_ids(team.shard, len(specs))
    with on_shard(team.shard), transaction.atomic(using=team.shard):
        channels = Channel.objects.bulk_create(
            [
                Channel(
                    id=channel_id,
                    team_id=team.team_id,
                    name=s.name,
                    kind=s.kind,
                    creator_id=s.creator_id,
                    created=now,
                    is_general=s.is_general,
                    dm_key=s.dm_key,
                    purpose=f"benchmark channel {s.name}" if s.name else "",
                )
                for channel_id, s in zip(ids, specs, strict=True)
            ],
            batch_size=batch,
        )
        memberships = (
            ChannelMember(team_id=team.team_id, channel_id=c.id, member_id=m)
            for c, s in zip(channels, specs, strict=True)
            for m in s.member_ids
        )
        while chunk := [row for _, row in zip(range(batch), memberships, strict=False)]:
            ChannelMember.objects.bulk_create(chunk)
    return [c.id for c in channels]


def join_channel(team: BenchTeam, channel_id: int, member_ids: list[int]) -> None:
    """Add memberships to an existing channel (e.g. everyone to #general), skipping existing ones."""
    from chatproject.dbrouter import on_shard
    from messaging.models import ChannelMember

    with on_shard(team.shard):
        ChannelMember.objects.bulk_create(
            [ChannelMember(team_id=team.team_id, channel_id=channel_id, member_id=m) for m in member_ids],
            batch_size=5000,
            ignore_conflicts=True,
        )


def channel_id_by_name(team: BenchTeam, name: str) -> int:
    from chatproject.dbrouter import on_shard
    from messaging.models import Channel

    with on_shard(team.shard):
        return int(Channel.objects.get(team_id=team.team_id, name=name).id)


def issue_tokens(team: BenchTeam, member_ids: list[int]) -> list[str]:
    """One user token per member through teams.tokens.issue_token, in one transaction."""
    from django.db import transaction

    from teams.models import ApiToken
    from teams.tokens import issue_token

    with transaction.atomic(using="default"):
        return [issue_token(team.team_id, m, ApiToken.Kind.USER) for m in member_ids]


def bump_boot_version(team: BenchTeam) -> None:
    """Invalidate the team-wide boot cache (rtm.start keys it by EventSequence.boot_version)."""
    from django.db.models import F

    from chatproject.dbrouter import on_shard
    from messaging.models import EventSequence

    with on_shard(team.shard):
        EventSequence.objects.filter(team_id=team.team_id).update(boot_version=F("boot_version") + 1)


def analyze(team: BenchTeam) -> None:
    """Vacuum and planner statistics for the tables benches bulk-load (members, channels,
    memberships, messages), on the team's shard: without statistics the first queries may
    scan every team's rows, and autovacuum would otherwise come round in the middle of the
    measurement. Only those tables: the whole database costs far more on a shard that
    earlier runs filled."""
    from django.db import connections

    from messaging.models import Channel, ChannelMember, Message
    from teams.models import Member

    tables = ", ".join(m._meta.db_table for m in (Member, Channel, ChannelMember, Message))
    with connections[team.shard].cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def user_slack_id(member_id: int) -> str:
    from teams import ids

    return ids.encode(ids.USER, member_id)


def slack_channel_id(channel_id: int, private: bool = False) -> str:
    from teams import ids

    return ids.encode(ids.PRIVATE if private else ids.PUBLIC, channel_id)


# ---------------------------------------------------------------------------- paced posting


@dataclass(frozen=True)
class PostSample:
    seq: int
    due: float
    sent: float
    done: float
    error: str | None


@dataclass
class PostRun:
    samples: list[PostSample]
    start: float
    end: float

    @property
    def ok(self) -> int:
        return sum(1 for s in self.samples if s.error is None)

    @property
    def errors(self) -> Counter[str]:
        return Counter(s.error for s in self.samples if s.error is not None)

    @property
    def last_done(self) -> float:
        return max((s.done for s in self.samples), default=self.start)

    def achieved_rate(self) -> float:
        span = max(self.end - self.start, self.last_done - self.start, 1e-6)
        return self.ok / span

    def call_ms(self, q: float) -> float:
        return percentile(sorted((s.done - s.sent) * 1000 for s in self.samples if s.error is None), q)

    def lag_ms(self, q: float) -> float:
        """How late posts were sent against their schedule (the poster falling behind)."""
        return percentile(sorted((s.sent - s.due) * 1000 for s in self.samples), q)


def post_text(tag: str, seq: int) -> str:
    """A post's text: the run's tag, its sequence number, and the monotonic time it was sent.

    CLOCK_MONOTONIC is system-wide on Linux, so receivers in other processes on this
    machine subtract it from their own time.monotonic().
    """
    return f"{tag} {seq} {time.monotonic():.6f}"


def paced_posts(
    base_urls: list[str], token: str, channel: str, tag: str, rate: float, seconds: float, threads: int
) -> PostRun:
    """Open loop: post n is due at start + n/rate, on thread n % threads (keep-alive
    connections spread over the daphnes). A post that is late is sent at once."""
    count = max(1, round(rate * seconds))
    start = time.monotonic() + 0.2
    end = start + seconds
    give_up = end + 30.0
    outs: list[list[PostSample]] = [[] for _ in range(threads)]

    def run(index: int) -> None:
        client = ApiClient(base_urls[index % len(base_urls)], token)
        try:
            for n in range(index, count, threads):
                due = start + n / rate
                now = time.monotonic()
                if now > give_up:
                    outs[index].append(PostSample(n, due, now, now, "not_sent_poster_behind"))
                    continue
                if due > now:
                    time.sleep(due - now)
                sent = time.monotonic()
                error = post_message_text(client, channel, post_text(tag, n))
                outs[index].append(PostSample(n, due, sent, time.monotonic(), error))
        finally:
            client.close()

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, give_up + 15 - time.monotonic()))
    return PostRun([s for out in outs for s in out], start, end)


def serial_posts(base_url: str, token: str, channel: str, tag: str, count: int) -> PostRun:
    """`count` posts back to back on one connection."""
    client = ApiClient(base_url, token)
    samples = []
    start = time.monotonic()
    try:
        for n in range(count):
            sent = time.monotonic()
            error = post_message_text(client, channel, post_text(tag, n))
            samples.append(PostSample(n, sent, sent, time.monotonic(), error))
    finally:
        client.close()
    return PostRun(samples, start, time.monotonic())


# ---------------------------------------------------------------------------- RTM receivers


@dataclass(frozen=True)
class SocketSpec:
    index: int
    token: str
    http: str  # base URL of the daphne this socket boots from and connects to
    connect_args: dict[str, Any] = field(default_factory=dict)  # rtm.connect arguments


class Receivers:
    """A few receiver processes, each holding many RTM sockets, driven over pipes.

    Commands go to every process at once and the replies are gathered, so all processes
    act together (e.g. a reconnect storm starts at one shared monotonic instant).
    """

    def __init__(self, specs: list[SocketSpec], processes: int, sample_every: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        processes = max(1, min(processes, len(specs)))
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for i in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=receiver_main,
                args=(child, specs[i::processes], sample_every),
                name=f"rtm-receiver-{i}",
                daemon=True,
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def call(self, command: str, timeout: float = REPLY_TIMEOUT_SECS, **args: Any) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send((command, args))
        replies = []
        deadline = time.monotonic() + timeout
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            while not pipe.poll(0.2):
                if not process.is_alive():
                    raise SystemExit(f"{process.name} died (exit code {process.exitcode})")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{process.name} did not answer {command!r} within {timeout:g} s")
            reply = pipe.recv()
            if "crash" in reply:
                raise SystemExit(f"{process.name} failed on {command!r}:\n{reply['crash']}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit", {}))
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for pipe in self.pipes:
            pipe.close()

    def __enter__(self) -> Receivers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_counters(replies: list[dict[str, Any]], key: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for reply in replies:
        total.update(reply.get(key, {}))
    return total


def receiver_main(pipe: Connection, specs: list[SocketSpec], sample_every: int = 1) -> None:
    """Entry point of a receiver process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through the pipe
    try:
        uvloop.run(_Receiver(pipe, specs, sample_every).serve())  # the product's loop, cheaper per read
    except Exception:  # the parent reports it
        import traceback

        with contextlib.suppress(OSError):
            pipe.send({"crash": traceback.format_exc()})


class _Socket:
    def __init__(self, spec: SocketSpec, sampled: bool) -> None:
        self.spec = spec
        self.sampled = sampled  # every frame parsed and timed; the others only counted
        self.ws: LightWebsocket | None = None
        self.reader: asyncio.Future[None] | None = None  # done when the socket closes
        self.reconnect_url = ""  # the server's latest reconnect_url frame
        self.cursor = 0  # the highest event_id seen
        self.got = 0  # messages of the current tag
        self.done_at: float | None = None
        self.complete = asyncio.Event()
        self.intentional_close = False
        self.attempts = 0  # rtm.connect + open attempts since the last phase


class _Receiver:
    def __init__(self, pipe: Connection, specs: list[SocketSpec], sample_every: int = 1) -> None:
        self.pipe = pipe
        self.sockets = [_Socket(s, s.index % sample_every == 0) for s in specs]
        self.http_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rtm-http")
        self.tag = "\x00"
        self.tag_marker = b"\x00"
        self.want = 0
        self.hist = Hist()
        self.delivered = 0
        self.dupes = 0
        self.frames = 0
        self.presence_frames = 0  # presence_change frames
        self.presence_entries = 0  # (user, state) pairs they carried: one per user listed
        self.retries = 0
        self.reconnect_urls_used = 0
        self.closes: Counter[str] = Counter()
        self.server_errors: Counter[str] = Counter()
        self.error_samples: list[dict[str, Any]] = []  # error frames: code, the socket's cursor, when

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipe") as pipe_reader:
            while True:
                command, args = await loop.run_in_executor(pipe_reader, self.pipe.recv)
                if command == "quit":
                    break
                try:
                    reply = await getattr(self, f"cmd_{command}")(**args)
                except Exception:
                    import traceback

                    reply = {"crash": traceback.format_exc()}
                self.pipe.send(reply)
        await self._close_all()
        self.http_pool.shutdown(wait=False, cancel_futures=True)

    # --- commands -------------------------------------------------------------------

    async def cmd_connect(self, concurrency: int, attempts: int = 3) -> dict[str, Any]:
        """Boot (rtm.connect) and open every socket, at most `concurrency` at a time; a
        failed attempt is counted and retried after a jittered backoff."""
        gate = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: Counter[str] = Counter()
        failed = 0

        async def one(sock: _Socket) -> None:
            nonlocal failed
            async with gate:
                started = time.monotonic()
                if await self._open_retrying(sock, None, started + SOCKET_OPEN_SECS * 4, errors, attempts):
                    times.append(time.monotonic() - started)
                else:
                    failed += 1

        await asyncio.gather(*(one(s) for s in self.sockets))
        return {"times": times, "errors": dict(errors), "failed": failed, "retries": self.retries}

    async def cmd_phase(self, tag: str, want: int) -> dict[str, Any]:
        """Count from now on the messages whose text starts with `tag`; `want` per socket."""
        self.tag = tag + " "
        self.tag_marker = b'"text": "' + self.tag.encode()
        self.want = want
        self.hist = Hist()
        self.delivered = self.dupes = self.retries = self.reconnect_urls_used = 0
        self.presence_frames = self.presence_entries = 0
        self.closes.clear()
        self.server_errors.clear()
        self.error_samples.clear()
        for sock in self.sockets:
            sock.attempts = 0
            sock.got = 0
            sock.done_at = None
            sock.complete = asyncio.Event()
        return {}

    async def cmd_progress(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "frames": self.frames,
            "complete": sum(1 for s in self.sockets if s.got >= self.want),
            "presence_frames": self.presence_frames,
            "presence_entries": self.presence_entries,
        }

    async def cmd_collect(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "hist": dict(self.hist.counts),
            "dupes": self.dupes,
            "frames": self.frames,
            "sockets": len(self.sockets),
            "open": sum(1 for s in self.sockets if s.ws is not None and s.reader and not s.reader.done()),
            "complete": sum(1 for s in self.sockets if s.got >= self.want),
            "done_at": [s.done_at for s in self.sockets if s.done_at is not None],
            "cursors": [s.cursor for s in self.sockets],
            "closes": dict(self.closes),
            "server_errors": dict(self.server_errors),
            "error_samples": list(self.error_samples),
            "retries": self.retries,
        }

    async def cmd_send(self, frames: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """Send a frame on some sockets (keyed by SocketSpec.index; others are skipped)."""
        sent = 0
        for sock in self.sockets:
            frame = frames.get(sock.spec.index)
            if frame is not None and sock.ws is not None:
                await sock.ws.send(json.dumps(frame))
                sent += 1
        return {"sent": sent}

    async def cmd_forget_reconnect_urls(self) -> dict[str, Any]:
        for sock in self.sockets:
            sock.reconnect_url = ""
        return {}

    async def cmd_drop(self) -> dict[str, Any]:
        """Close every socket from the client side, keeping each one's cursor."""
        await self._close_all()
        return {"cursors": [s.cursor for s in self.sockets]}

    async def cmd_reconnect(self, start_at: float, limit: float) -> dict[str, Any]:
        """At `start_at` (monotonic), every socket boots again with rtm.connect, swaps the
        ticket URL's `since` for its own cursor, opens, and waits for `want` messages.

        As a client would, a failed attempt (or a socket closed before it caught up) is
        retried from the socket's cursor after a jittered exponential backoff; every
        failed attempt is counted as an error."""
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        deadline = start_at + limit
        errors: Counter[str] = Counter()
        opened: list[float] = []

        async def one(sock: _Socket) -> None:
            tries = 0
            while time.monotonic() < deadline:
                tries += 1
                if not await self._open_retrying(sock, sock.cursor, deadline, errors, 1_000_000):
                    break
                if tries == 1:
                    opened.append(time.monotonic() - start_at)
                waiter = asyncio.ensure_future(sock.complete.wait())
                assert sock.reader is not None
                await asyncio.wait(
                    [waiter, sock.reader],
                    timeout=max(0.01, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                if sock.complete.is_set():
                    break
                if sock.reader.done():  # the server closed it before it caught up
                    errors[f"closed before caught up ({sock.ws.close_code})"] += 1
                    await asyncio.sleep(_backoff(tries))

        await asyncio.gather(*(one(s) for s in self.sockets))
        return {
            "done": [s.done_at - start_at for s in self.sockets if s.done_at is not None],
            "opened": opened,
            "attempts": [s.attempts for s in self.sockets],
            "errors": dict(errors),
            "retries": self.retries,
            "reconnect_urls": self.reconnect_urls_used,
            "dupes": self.dupes,
            "delivered": self.delivered,
            "closes": dict(self.closes),
            "server_errors": dict(self.server_errors),
            "error_samples": list(self.error_samples),
        }

    # --- sockets --------------------------------------------------------------------

    async def _open_retrying(
        self, sock: _Socket, since: int | None, deadline: float, errors: Counter[str], attempts: int
    ) -> bool:
        """_open, retried after a jittered exponential backoff; each failure counted in `errors`."""
        for attempt in range(1, attempts + 1):
            try:
                await self._open(sock, since=since, deadline=deadline)
                return True
            except Exception as exc:
                errors[_describe(exc)] += 1
                pause = _backoff(attempt)
                if attempt == attempts or time.monotonic() + pause > deadline:
                    return False
                await asyncio.sleep(pause)
        return False

    async def _open(self, sock: _Socket, since: int | None, deadline: float) -> None:
        """Boot with rtm.connect (or reuse the server's reconnect_url when reconnecting from a
        cursor), open the socket and wait for hello."""
        loop = asyncio.get_running_loop()
        sock.attempts += 1
        url = ""
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("deadline passed while booting")
            if url:
                pass  # refused before its ticket was redeemed: the same URL again
            elif since is not None and sock.reconnect_url:
                url, sock.reconnect_url = with_since(sock.reconnect_url, since), ""  # one use
                self.reconnect_urls_used += 1
            else:
                status, body, retry_after = await loop.run_in_executor(
                    self.http_pool, _rtm_connect, sock.spec
                )
                if status == 429:
                    self.retries += 1
                    await asyncio.sleep(retry_after or 1.0)
                    continue
                if status != 200 or not body.get("ok"):
                    raise BenchError(f"rtm.connect {status} {body.get('error')}")
                url = body["url"] if since is None else with_since(body["url"], since)
            budget = max(1.0, min(SOCKET_OPEN_SECS, deadline - time.monotonic()))
            ws = await LightWebsocket.connect(url, budget)
            first = json.loads(await ws.recv(budget))
            if first.get("type") == "error" and first.get("error", {}).get("code") == "ratelimited":
                self.retries += 1
                await ws.close()
                await asyncio.sleep(float(first["error"].get("retry_after") or 1) * random.uniform(0.5, 1.0))
                continue
            if first.get("type") != "hello":
                await ws.close()
                raise BenchError(f"first frame {first.get('type')}: {first.get('error')}")
            sock.ws = ws
            sock.intentional_close = False
            sock.reader = ws.closed
            ws.closed.add_done_callback(lambda _, sock=sock, ws=ws: self._closed(sock, ws))
            ws.deliver_to(partial(self._frame if sock.sampled else self._count, sock))
            return

    def _closed(self, sock: _Socket, ws: LightWebsocket) -> None:
        if not sock.intentional_close:
            self.closes[str(ws.close_code)] += 1

    def _count(self, sock: _Socket, raw: bytes) -> None:
        """An unsampled socket: count the tagged messages and check event ids, no JSON parse."""
        if not raw.startswith(b'{"type": "message"'):
            self._frame(sock, raw)  # rare kinds (errors, reconnect_url, ...) are parsed
            return
        self.frames += 1
        at = raw.rfind(b'"event_id": ')
        if at >= 0:
            end = at + 12
            while 48 <= raw[end] <= 57:
                end += 1
            event_id = int(raw[at + 12 : end])
            if event_id <= sock.cursor:
                self.dupes += 1
                return
            sock.cursor = event_id
        if self.tag_marker in raw:
            self.delivered += 1
            sock.got += 1
            if sock.got == self.want:
                sock.done_at = time.monotonic()
                sock.complete.set()

    def _frame(self, sock: _Socket, raw: str | bytes) -> None:
        now = time.monotonic()
        self.frames += 1
        frame = json.loads(raw)
        event_id = frame.get("event_id")
        if isinstance(event_id, int):
            if event_id <= sock.cursor:
                self.dupes += 1
                return
            sock.cursor = event_id
        kind = frame.get("type")
        if kind == "presence_change":
            self.presence_frames += 1
            self.presence_entries += len(frame["users"]) if "users" in frame else 1
            return
        if kind != "message":
            if kind == "reconnect_url":
                sock.reconnect_url = str(frame.get("url") or "")
            elif kind in ("error", "goodbye"):
                code = str(frame.get("error", {}).get("code", kind))
                self.server_errors[code] += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append({"code": code, "cursor": sock.cursor, "at": now})
            return
        text = frame.get("text") or ""
        if not text.startswith(self.tag):
            return
        if sock.sampled:
            self.hist.add((now - float(text.rsplit(" ", 1)[1])) * 1000)
        self.delivered += 1
        sock.got += 1
        if sock.got == self.want:
            sock.done_at = now
            sock.complete.set()

    async def _close_all(self) -> None:
        async def close(sock: _Socket) -> None:
            if sock.ws is None:
                return
            sock.intentional_close = True
            with contextlib.suppress(Exception):
                await sock.ws.close(timeout=5)
            sock.ws = None
            sock.reader = None

        await asyncio.gather(*(close(s) for s in self.sockets))


class BenchError(Exception):
    pass


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1, 2, ...): 0.5 s doubling up to 8 s, +-50% jitter."""
    return min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:80] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rtm_connect(spec: SocketSpec) -> tuple[int, dict[str, Any], float | None]:
    """rtm.connect on a connection of its own, as a separate client would."""
    client = ApiClient(spec.http, spec.token)
    try:
        reply = client.call("rtm.connect", dict(spec.connect_args))
        return reply.status, reply.body, reply.retry_after
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return 0, {"error": type(exc).__name__}, None
    finally:
        client.close()


def with_since(url: str, since: int) -> str:
    """The ticket URL with `since` replaced by the client's own cursor."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["since"] = str(since)
    return urlunsplit(parts._replace(query=urlencode(query)))


def event_log_state(team: BenchTeam) -> dict[str, int]:
    """The team's event log: its head (last_event_id) and the ids it holds."""
    from django.db.models import Count, Max, Min

    from chatproject.dbrouter import on_shard
    from messaging.models import Event, EventSequence

    with on_shard(team.shard):
        head = (
            EventSequence.objects.filter(team_id=team.team_id).values_list("last_event_id", flat=True).first()
        )
        span = Event.objects.filter(team_id=team.team_id).aggregate(
            first=Min("event_id"), last=Max("event_id"), rows=Count("id")
        )
    return {"head": int(head or 0), **{k: int(v or 0) for k, v in span.items()}}


def describe_error_samples(replies: list[dict[str, Any]], team: BenchTeam) -> list[str]:
    """Lines about error frames the server sent (e.g. resync_required), with the log's state."""
    samples = sorted((s for r in replies for s in r.get("error_samples", [])), key=lambda s: s["at"])
    if not samples:
        return []
    log = event_log_state(team)
    cursors = sorted(s["cursor"] for s in samples)
    spread = samples[-1]["at"] - samples[0]["at"]
    return [
        f"server error frames: {dict(merge_counters(replies, 'server_errors'))}; sampled sockets' cursors "
        f"{cursors[0]}..{cursors[-1]}, within {spread:.2f} s of each other; the event log holds ids "
        f"{log['first']}..{log['last']} ({log['rows']} rows), head {log['head']}"
    ]


def socket_specs(
    tokens: list[str], daphnes: list[Daphne], connect_args: dict[str, Any] | None = None
) -> list[SocketSpec]:
    """Sockets spread round-robin over the daphnes."""
    return [
        SocketSpec(i, t, daphnes[i % len(daphnes)].http, dict(connect_args or {}))
        for i, t in enumerate(tokens)
    ]


def wait_for_delivery(
    receivers: Receivers, expected: int, stall_secs: float, cap_secs: float
) -> tuple[int, float]:
    """Poll until `expected` messages are delivered in total, nothing has arrived for
    `stall_secs`, or `cap_secs` have passed. Returns (delivered, when the last arrived)."""
    started = time.monotonic()
    last_total, last_change = -1, started
    while True:
        total = sum(r["delivered"] for r in receivers.call("progress"))
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        if total >= expected or now - last_change > stall_secs or now - started > cap_secs:
            return total, last_change
        time.sleep(0.2)


def wait_for_quiet(receivers: Receivers, quiet_secs: float = 2.0, cap_secs: float = 120.0) -> float:
    """Wait until no frame has arrived on any socket for `quiet_secs`; returns seconds waited."""
    started = time.monotonic()
    last, since = -1, started
    while time.monotonic() - started < cap_secs:
        frames = sum(r["frames"] for r in receivers.call("progress"))
        if frames != last:
            last, since = frames, time.monotonic()
        elif time.monotonic() - since >= quiet_secs:
            break
        time.sleep(0.25)
    return time.monotonic() - started


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"{label} ...", end=" ", flush=True)
    yield
    print(f"{time.monotonic() - started:.1f} s", flush=True)
