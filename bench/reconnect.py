"""Mass reconnect: N sockets drop, messages land while they are away, all come back at once.

    .venv/bin/python bench/reconnect.py                       # 2,000 sockets, 100 messages
    .venv/bin/python bench/reconnect.py --quick               # 300 sockets
    .venv/bin/python bench/reconnect.py --product-admission   # with the product's admission rates

It starts the embedded PostgreSQL and Redis of its own data dir (--data-dir, default
/tmp/chat-bench-rtm; left running if they already were), runs migrate_all, and starts
--daphnes daphne processes with CHAT_RATE_LIMITS=0 (rtm.connect is tier 1: 20/min per
token) and boot and socket admission at 100,000/s, so what is measured is the servers'
capacity; --product-admission keeps the product's defaults (boot 200/s per team, 1000/s
in total, 1000 sockets/s), where a 429 or a `ratelimited` socket error is retried after
its Retry-After, as a client would, and counted as a retry, not an error. It stops
everything it started when done.

A team of --sockets members is written in bulk (ORM), all in one channel. Every member
connects (rtm.connect, then the socket), all see one warm-up post, then every socket is
closed by the client. --messages posts land while they are away. Then, at one instant,
every client reconnects as Slack's RTM clients do: to the `reconnect_url` the server sent
on its socket (with --no-reconnect-url, or when none came, through rtm.connect for a fresh
one-time ticket), with `since` set to the last event_id it saw, and waits for the messages
it missed.
A client whose attempt fails (handshake refused or timed out, socket closed before it
caught up) retries from its cursor after a jittered exponential backoff (0.5 s doubling
to 8 s), until --limit; every failed attempt counts as an error.

Reported: time from the storm's start until every socket had every missed message
(target <= 3 s), per-socket p50/p99, errors (target 0), retries, duplicates, and
PostgreSQL work per reconnect. pg_stat_statements is used when the extension is
installed (statement calls); otherwise transactions committed from pg_stat_database:
Django runs in autocommit, so outside an atomic block each statement is its own
transaction and commits per reconnect approximate statements per reconnect (a block's
statements count once). rtm.connect's own query count is measured exactly in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bulk_team import (  # noqa: E402
    ChannelSpec,
    add_channels,
    add_members,
    bump_boot_version,
    create_bench_team,
    issue_tokens,
    slack_channel_id,
)
from bench.cluster import Cluster, add_server_args  # noqa: E402
from bench.posting import serial_posts  # noqa: E402
from bench.probes import STATS_SETTLE_SECS, CpuMeter, db_counters, format_cpu  # noqa: E402
from bench.receivers import (  # noqa: E402
    Receivers,
    describe_error_samples,
    merge_counters,
    socket_specs,
    wait_for_delivery,
    wait_for_quiet,
)
from bench.stats import percentile, quantiles_ms, timed  # noqa: E402


def statement_calls() -> dict[str, int] | None:
    """sum(calls) of pg_stat_statements per database alias, or None where it is not installed."""
    from django.db import connections

    totals = {}
    for alias in connections:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
                if cursor.fetchone() is None:
                    return None
                cursor.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                totals[alias] = int(cursor.fetchone()[0])
        except Exception:  # installed but not preloaded: the view errors
            return None
    return totals


def rtm_connect_queries(token: str) -> dict[str, int]:
    """Queries of one rtm.connect on each database, in-process (caches warmed first)."""
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.post("/api/rtm.connect", **headers)
    with contextlib.ExitStack() as stack:
        captures = {a: stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections}
        response = client.post("/api/rtm.connect", **headers)
    if not response.json().get("ok"):
        raise SystemExit(f"in-process rtm.connect failed: {response.content[:200]!r}")
    return {a: len(c.captured_queries) for a, c in captures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000, help="sockets, one member each")
    parser.add_argument("--messages", type=int, default=100, help="posts while the sockets are away")
    parser.add_argument("--receivers", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    parser.add_argument(
        "--sample-every",
        type=int,
        default=10,
        help="JSON-parse and time every frame on every Nth socket; the others only count",
    )
    parser.add_argument("--limit", type=float, default=60.0, help="give up on the storm after this")
    parser.add_argument("--target-secs", type=float, default=3.0, help="the target for all caught up")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="initial boots in flight")
    parser.add_argument("--quick", action="store_true", help="300 sockets")
    parser.add_argument(
        "--no-reconnect-url",
        action="store_true",
        help="reconnect through rtm.connect even where the server sent a reconnect_url",
    )
    add_server_args(parser, daphnes=2)
    args = parser.parse_args()
    if args.quick:
        args.sockets = 300

    with Cluster.from_args(args) as cluster:
        with timed(f"team with {args.sockets} members in one channel (bulk ORM)"):
            team = create_bench_team("reconnect")
            members = add_members(team, args.sockets)
            (channel_id,) = add_channels(
                team, [ChannelSpec("storm", "public", [team.owner_id, *members], team.owner_id)]
            )
            tokens = issue_tokens(team, members)
            bump_boot_version(team)
        channel = slack_channel_id(channel_id)
        post_url = cluster.daphnes[0].http
        specs = socket_specs(tokens, cluster.daphnes)
        with Receivers(specs, args.receivers, args.sample_every) as receivers:
            started = time.monotonic()
            replies = receivers.call("connect", concurrency=args.connect_concurrency)
            errors = merge_counters(replies, "errors")
            failed = sum(r["failed"] for r in replies)
            print(
                f"connected {args.sockets - failed}/{args.sockets} sockets over "
                f"{len(receivers.pids)} receiver processes in {time.monotonic() - started:.1f} s"
                + (f" (failed attempts, retried: {dict(errors)})" if errors else ""),
                flush=True,
            )
            if failed:
                raise SystemExit(f"{failed} sockets never connected: {dict(errors)}")

            receivers.call("phase", tag="warmup", want=1)
            serial_posts(post_url, team.owner_token, channel, "warmup", 1)
            got, _ = wait_for_delivery(receivers, args.sockets, 10.0, 120.0)
            wait_for_quiet(receivers, 1.0, 60.0)
            print(f"warm-up post seen by {got}/{args.sockets} sockets", flush=True)

            if args.no_reconnect_url:
                receivers.call("forget_reconnect_urls")
            receivers.call("drop")
            time.sleep(1.5)  # let the servers run every disconnect
            away = serial_posts(post_url, team.owner_token, channel, "away", args.messages)
            if away.ok != args.messages:
                raise SystemExit(f"posting while away failed: {dict(away.errors)}")
            print(
                f"dropped all sockets; posted {away.ok} messages while away "
                f"({away.ok / max(1e-6, away.end - away.start):.0f}/s)",
                flush=True,
            )
            receivers.call("phase", tag="away", want=args.messages)
            connect_queries = rtm_connect_queries(tokens[0])

            time.sleep(STATS_SETTLE_SECS)
            calls_before = statement_calls()
            db_before = db_counters()
            meter = CpuMeter(cluster.probe(), receivers.pids)
            meter.start()
            start_at = time.monotonic() + 0.5
            print(f"reconnecting {args.sockets} sockets at once ...", flush=True)
            replies = receivers.call(
                "reconnect", timeout=args.limit + 60, start_at=start_at, limit=args.limit
            )
            cpu = meter.stop()
            time.sleep(STATS_SETTLE_SECS)
            db_after = db_counters()
            calls_after = statement_calls()
        report(args, replies, cpu, db_before, db_after, calls_before, calls_after, connect_queries)
        for line in describe_error_samples(replies, team):
            print("note: " + line)
        for problem in cluster.check_daphnes()[:10]:
            print("daphne log: " + problem)
        print(
            f"note: client and servers share this machine's {os.cpu_count()} cores (and anything "
            "else running on it): figures are noisy."
        )


def percentile_int(values: list[int], q: float) -> int:
    return int(percentile(values, q)) if values else 0


def report(
    args: argparse.Namespace,
    replies: list[dict[str, Any]],
    cpu: dict[str, float],
    db_before: dict[str, tuple[int, int]],
    db_after: dict[str, tuple[int, int]],
    calls_before: dict[str, int] | None,
    calls_after: dict[str, int] | None,
    connect_queries: dict[str, int],
) -> None:
    n = args.sockets
    done = sorted(t for r in replies for t in r["done"])
    attempts = sorted(a for r in replies for a in r["attempts"])
    opened = sorted(t for r in replies for t in r["opened"])
    errors = merge_counters(replies, "errors")
    closes = merge_counters(replies, "closes")
    retries = sum(r["retries"] for r in replies)
    via_url = sum(r.get("reconnect_urls", 0) for r in replies)
    dupes = sum(r["dupes"] for r in replies)
    delivered = sum(r["delivered"] for r in replies)
    all_done = len(done) == n
    last = done[-1] if done else float("nan")
    d50, d99, _ = quantiles_ms(done)
    o50, o99, omax = quantiles_ms(opened)

    print()
    print(f"reconnect storm: {n} sockets over {args.daphnes} daphne, {args.messages} messages missed each")
    print(f"{'':<44}{'value':>18}")
    rows = [
        ("sockets reopened", f"{len(opened)}/{n}"),
        ("sockets with every missed message", f"{len(done)}/{n}"),
        ("messages delivered / expected", f"{delivered}/{n * args.messages}"),
        ("time until all caught up (s)", f"{last:.2f}" if all_done else "not all"),
        ("per socket caught up p50 / p99 (ms)", f"{d50:.0f} / {d99:.0f}"),
        ("per socket reopened p50 / p99 / max (ms)", f"{o50:.0f} / {o99:.0f} / {omax:.0f}"),
        ("errors (failed attempts, each retried)", str(sum(errors.values()))),
        ("attempts per socket p50 / max", f"{percentile_int(attempts, 0.5)} / {max(attempts, default=0)}"),
        ("429 / ratelimited retries", str(retries)),
        ("reconnects via reconnect_url", str(via_url)),
        ("duplicate frames", str(dupes)),
        ("sockets closed by the server", str(sum(closes.values()))),
    ]
    for label, value in rows:
        print(f"{label:<44}{value:>18}")
    if errors:
        print("failed attempts: " + ", ".join(f"{k} x{v}" for k, v in errors.most_common(5)))
    if closes:
        print(f"server close codes: {dict(closes)}")
    print(f"CPU % of one core during the storm: {format_cpu(cpu)}")

    print()
    aliases = list(db_after)
    print("PostgreSQL per reconnect (rtm.connect + socket admission + replay), per database:")
    if calls_before is not None and calls_after is not None:
        method, short = "statements (pg_stat_statements sum(calls))", "statements"
        work = {a: (calls_after[a] - calls_before[a]) / n for a in aliases}
    else:
        method = "transactions committed (pg_stat_database.xact_commit; ~statements in autocommit)"
        short = "transactions committed"
        work = {a: (db_after[a][1] - db_before[a][1]) / n for a in aliases}
    sessions = {a: (db_after[a][0] - db_before[a][0]) / n for a in aliases}
    print(f"{'':<40}" + "".join(f"{a:>10}" for a in aliases) + f"{'total':>8}")
    print(f"{short:<40}" + "".join(f"{work[a]:>10.2f}" for a in aliases) + f"{sum(work.values()):>8.2f}")
    tries = sum(attempts) or n
    if tries != n:  # failed attempts did work too: spread over every attempt
        print(
            f"{'  the same per attempt (' + str(tries) + ')':<40}"
            + "".join(f"{work[a] * n / tries:>10.2f}" for a in aliases)
            + f"{sum(work.values()) * n / tries:>8.2f}"
        )
    print(
        f"{'new sessions (connections opened)':<40}"
        + "".join(f"{sessions[a]:>10.3f}" for a in aliases)
        + f"{sum(sessions.values()):>8.3f}"
    )
    print(
        f"{'rtm.connect alone, exact (in-process)':<40}"
        + "".join(f"{connect_queries.get(a, 0):>10}" for a in aliases)
        + f"{sum(connect_queries.values()):>8}"
    )
    print(f"measured by: {method}")

    print()
    caught_up = all_done and last <= args.target_secs
    print(
        f"target all caught up <= {args.target_secs:g} s: "
        f"{f'{last:.2f} s' if all_done else f'{len(done)}/{n} sockets'}: {'PASS' if caught_up else 'FAIL'}"
    )
    print(f"target 0 errors: {sum(errors.values())}: {'PASS' if not errors else 'FAIL'}")


if __name__ == "__main__":
    main()
