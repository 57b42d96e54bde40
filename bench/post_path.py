"""chat.postMessage under load: posts/s, latency, and SQL queries per post.

Run it on the machine that runs `./run`, with the same CHAT_DATA_DIR (it reads the
database URLs from there and finds the server's processes to sample their CPU):

    CHAT_RATE_LIMITS=0 ./run                                   # terminal 1
    CHAT_DATA_DIR=./var .venv/bin/python bench/post_path.py    # terminal 2

It creates a fresh team (an owner and --clients members, one token each), one hot
channel and --channels more, all members in all of them. Then, for each of {one hot
channel, --channels channels}:

  paced  open loop: --rate posts/s in total from --clients keep-alive connections,
         each post due at a fixed time; latency counts from when a post was due, so a
         server that falls behind cannot hide it by slowing the client down.
  max    closed loop: every client posts back to back; posts/s is the throughput.

A --rate above what the server sustains shows queueing, not service time: add a run at
a lower --rate (say 30) to see the latency of an unsaturated server.

and, in this process through django.test.Client, how many SQL queries one post and one
thread reply cost on each database (`default` is the control DB, `shard_*` the shards).

Start the server with CHAT_RATE_LIMITS=0 for the max phase: with limits on,
chat.postMessage allows 1200/min per token, which the paced phase stays under (100/s
over 8 tokens is 750/min each) but the max phase exceeds (429s are counted as errors).
The client shares the cores with the server; its own CPU is printed beside the server's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api_client import ApiClient  # noqa: E402
from bench.post_phases import TEXT, PhaseResult, run_phase  # noqa: E402
from bench.probes import ServerProbe  # noqa: E402

MANAGE_TIMEOUT_SECS = 120.0
SETUP_DEADLINE_SECS = 300.0  # setup waits out rate limits (one-minute windows) at most this long


# ---------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str


@dataclass(frozen=True)
class World:
    domain: str
    owner: Account
    members: list[Account]
    hot: str
    channels: list[str]


def manage(*args: str) -> dict[str, Any]:
    """Run a management command with --json against the same servers; return its JSON."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args, "--json"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT_SECS,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def setup_call(client: ApiClient, method: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
    """A setup call that must succeed; a rate-limited one waits for its window."""
    while True:
        reply = client.call(method, body)
        wait = min(reply.retry_after or 1.0, 65.0)
        if reply.status == 429 and time.monotonic() + wait < deadline:
            time.sleep(wait)
            continue
        if not reply.body.get("ok"):
            raise SystemExit(f"{method} {body} failed: HTTP {reply.status} {reply.body}")
        return reply.body


def create_world(base_url: str, clients: int, channel_count: int) -> World:
    deadline = time.monotonic() + SETUP_DEADLINE_SECS
    domain = f"bench-{secrets.token_hex(4)}"
    team = manage(
        "create_team", "--domain", domain, "--name", "Bench", "--owner-email", f"owner@{domain}.test"
    )
    owner = Account(team["owner"]["user_id"], team["owner"]["token"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        made = pool.map(
            lambda i: manage("create_member", "--team", domain, "--email", f"member{i}@{domain}.test"),
            range(clients),
        )
        members = [Account(m["user_id"], m["token"]) for m in made]

    # conversations.create allows 100/min per token (tier 2), so the channels are made
    # by everyone in turn rather than all by the owner; each maker invites the rest.
    makers = [owner, *members]
    names = ["hot", *(f"ch-{i:03d}" for i in range(channel_count))]
    ids: dict[str, str] = {}

    def make(maker: Account) -> None:
        client = ApiClient(base_url, maker.token)
        invitees = ",".join(m.user_id for m in members if m != maker)
        try:
            for name in names[makers.index(maker) :: len(makers)]:
                created = setup_call(client, "conversations.create", {"name": name}, deadline)
                ids[name] = created["channel"]["id"]
                if invitees:
                    setup_call(
                        client, "conversations.invite", {"channel": ids[name], "users": invitees}, deadline
                    )
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=len(makers)) as pool:
        list(pool.map(make, makers))
    return World(domain, owner, members, ids["hot"], [ids[n] for n in names[1:]])


# ---------------------------------------------------------------------------- SQL per post


@dataclass(frozen=True)
class QueryCount:
    label: str
    mean: dict[str, float]  # per database alias
    most: dict[str, int]
    sql: dict[str, list[str]]  # of the last request, per alias


def count_queries(world: World, posts: int) -> list[QueryCount]:
    """Queries per chat.postMessage (top level, and thread reply) on each database, in-process."""
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    token = world.members[0].token

    def send(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        with contextlib.ExitStack() as stack:
            captures = {
                alias: stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections
            }
            response = client.post(
                "/api/chat.postMessage",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
        data = response.json()
        if not data.get("ok"):
            raise SystemExit(f"in-process chat.postMessage failed: {data}")
        return data, {alias: [q["sql"] for q in c.captured_queries] for alias, c in captures.items()}

    def measure(label: str, body: dict[str, Any]) -> QueryCount:
        # The first request fills the token and team caches: it is left out.
        runs = [send({**body, "text": f"{TEXT} #q{n}"})[1] for n in range(posts + 1)][1:]
        aliases = list(runs[0])
        return QueryCount(
            label,
            {a: sum(len(r[a]) for r in runs) / len(runs) for a in aliases},
            {a: max(len(r[a]) for r in runs) for a in aliases},
            runs[-1],
        )

    parent, _ = send({"channel": world.hot, "text": f"{TEXT} (thread parent)"})
    return [
        measure("post", {"channel": world.hot}),
        measure("thread reply", {"channel": world.hot, "thread_ts": parent["ts"]}),
    ]


# ---------------------------------------------------------------------------- report


def print_report(
    args: argparse.Namespace, results: list[PhaseResult], queries: list[QueryCount], probe: ServerProbe | None
) -> None:
    cores = psutil.cpu_count() or 1
    print()
    print(
        f"chat.postMessage via {args.base_url}: {args.clients} clients, {args.seconds:g} s per phase, "
        f"{cores} cores; latency from when a post was due"
    )
    print(f"{'phase':<28}{'posts/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  errors")
    for r in results:
        errors = ", ".join(f"{k} x{v}" for k, v in r.errors.most_common()) or "0"
        print(
            f"{r.label:<28}{r.posts_per_sec:>9.1f}{r.latency_ms(0.5):>9.2f}{r.latency_ms(0.99):>9.2f}"
            f"{r.latency_ms(1.0):>9.1f}  {errors}"
        )

    groups = ["client", *(probe.found() if probe else []), "other", "machine"]
    aliases = sorted({a for r in results for a in r.db_per_post})
    print()
    print(
        f"CPU % of one core during each phase (machine = everything, {cores * 100} = all cores; "
        "other = not this server nor the bench);"
    )
    print("PostgreSQL sessions opened and transactions committed per post, per database")
    head = "".join(f"{g:>9}" for g in groups) + "".join(f"{a + ' s/c':>16}" for a in aliases)
    print(f"{'phase':<28}{head}")
    for r in results:
        cpu = "".join(f"{r.cpu_pct.get(g, float('nan')):>9.0f}" for g in groups)
        db = "".join(
            f"{r.db_per_post[a][0]:>8.2f}/{r.db_per_post[a][1]:<7.2f}" if a in r.db_per_post else " " * 16
            for a in aliases
        )
        print(f"{r.label:<28}{cpu}{db}")

    print()
    print(
        f"SQL queries per request as Django logs them, BEGIN and COMMIT included "
        f"(mean of {args.query_posts}, first excluded; max)"
    )
    aliases = list(queries[0].mean) if queries else []
    print(f"{'request':<28}" + "".join(f"{a:>12}" for a in aliases) + f"{'total':>12}")
    for q in queries:
        cells = "".join(f"{q.mean[a]:>7.1f} ({q.most[a]})" for a in aliases)
        print(f"{q.label:<28}{cells}{sum(q.mean.values()):>12.1f}")
    if args.show_sql:
        for q in queries:
            for alias, statements in q.sql.items():
                for sql in statements:
                    print(f"  {q.label} @{alias}: {' '.join(sql.split())[:150]}")

    print()
    print_verdict(args, results, queries)


def print_verdict(args: argparse.Namespace, results: list[PhaseResult], queries: list[QueryCount]) -> None:
    cores = psutil.cpu_count() or 1
    for r in results:
        if r.paced:
            behind = r.send_lag_ms(0.99)
            if behind > 5:
                print(f"note: {r.label}: p99 send lag {behind:.1f} ms, the client fell behind its schedule")
            achieved = r.posts_per_sec >= 0.95 * args.rate and not r.errors
            verdict = "PASS" if achieved and r.latency_ms(0.5) <= 10 else "FAIL"
            print(
                f"target p50 <= 10 ms at {args.rate:g} posts/s, {r.label}: p50 {r.latency_ms(0.5):.2f} ms "
                f"at {r.posts_per_sec:.1f}/s with {sum(r.errors.values())} errors: {verdict}"
            )
    for q in queries:
        if q.label == "post":
            total = sum(q.mean.values())
            print(f"target <= 6 queries per post: {total:.1f}: {'PASS' if total <= 6 else 'FAIL'}")
    if any("ratelimited" in r.errors for r in results):
        print("note: posts were rate-limited; start the server with CHAT_RATE_LIMITS=0 for the max phase")

    for r in results:
        if r.paced:
            continue
        hints = []
        if r.cpu_pct.get("daphne", 0) >= 80:
            # One Python process: the GIL keeps it to one core however many threads it runs.
            hints.append(f"daphne at {r.cpu_pct['daphne']:.0f}% of a core, which is all one process gets")
        for name in ("postgres", "celery", "redis"):
            if r.cpu_pct.get(name, 0) >= 80:
                hints.append(f"{name} at {r.cpu_pct[name]:.0f}% of a core")
        if r.cpu_pct.get("machine", 0) >= 85 * cores:
            hints.append(
                f"the machine's {cores} cores are saturated (bench client {r.cpu_pct['client']:.0f}%)"
            )
        sessions = sum(s for s, _ in r.db_per_post.values())
        if sessions >= 0.5:
            hints.append(f"{sessions:.2f} new PostgreSQL connections per post")
        if not hints:
            hints.append("no process is CPU-bound: waiting (row locks, commit fsync, round trips)")
        print(f"bottleneck, {r.label} at {r.posts_per_sec:.0f} posts/s: " + "; ".join(hints))


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="the running server (default http://127.0.0.1:$CHAT_PORT)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=100.0, help="posts/s in total in the paced phases")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one token each")
    parser.add_argument("--channels", type=int, default=100, help="channels in the spread scenario")
    parser.add_argument("--query-posts", type=int, default=20, help="posts measured for SQL per post")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of one post and one reply")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    from django.conf import settings

    args.base_url = (args.base_url or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
    ping = ApiClient(args.base_url, "")
    try:
        ping.call("api.test", {})
    except OSError as exc:
        raise SystemExit(f"no server at {args.base_url} ({exc}); start ./run first") from None
    finally:
        ping.close()

    started = time.monotonic()
    world = create_world(args.base_url, args.clients, args.channels)
    print(
        f"team {world.domain}: {args.clients} members, 1 + {args.channels} channels "
        f"(set up in {time.monotonic() - started:.1f} s)"
    )

    url = urlsplit(args.base_url)
    probe = None
    if url.hostname in ("127.0.0.1", "localhost"):
        db_ports = {int(db.get("PORT") or 5432) for db in settings.DATABASES.values()}
        redis_port = urlsplit(settings.REDIS_URL).port
        probe = ServerProbe(url.port or 80, db_ports, redis_port)
        print(f"sampling CPU of: {', '.join(probe.found()) or 'nothing found'}")

    queries = count_queries(world, args.query_posts)

    clients = [ApiClient(args.base_url, m.token) for m in world.members]
    scenarios = [("hot channel", [world.hot]), (f"{args.channels} channels", world.channels)]
    results = []
    try:
        for name, channels in scenarios:
            for mode, rate in ((f"paced {args.rate:g}/s", args.rate), ("max", None)):
                label = f"{name}, {mode}"
                print(f"running {label} ...", flush=True)
                results.append(run_phase(label, clients, channels, args.seconds, rate, probe))
    finally:
        for client in clients:
            client.close()
    print_report(args, results, queries, probe)


if __name__ == "__main__":
    main()
