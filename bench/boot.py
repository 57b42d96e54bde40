"""Boot cost in a big team: rtm.connect and rtm.start latency, payload size, SQL per boot.

    .venv/bin/python bench/boot.py             # 10,000 members, 2,000 channels
    .venv/bin/python bench/boot.py --quick     # 2,000 members, 400 channels

It starts the embedded PostgreSQL and Redis of its own data dir (--data-dir, default
/tmp/chat-bench-rtm; left running if they already were), runs migrate_all, and starts
one daphne with CHAT_RATE_LIMITS=0 (rtm.* are tier 1, 20/min per token) and boot
admission at 100,000/s (--product-admission keeps the product's 200/s per team). It
stops everything it started when done.

The team is written in bulk with the ORM: --members members (all in #general),
--channels channels (#general, #random and the rest with --channel-members random
members each, one in ten private), and the measured member in --my-channels of them
plus --dms DMs, each with --messages messages, a quarter of them unread and one in ten
mentioning the member. Then, over HTTP against daphne:

  rtm.connect   --connect-calls calls back to back on one keep-alive connection
  rtm.start     full and lean (only the people the caller's conversations name), each
                with Accept-Encoding: gzip and without, each cold (EventSequence.boot_version
                bumped through the ORM before every call, so the team-wide part is rebuilt)
                and cached; body size decoded, as sent ("wire") and gzip.compress'd at
                level 9 for reference. One cold boot of each kind first, untimed: a
                running server has booted before (thread pools, time zones loaded).

and in this process through django.test.Client, SQL queries per call on each database
(CaptureQueriesContext on every connection; BEGIN/COMMIT/SET count as queries).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import os
import random
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bulk_team import (  # noqa: E402
    BenchTeam,
    ChannelSpec,
    add_channels,
    add_members,
    analyze,
    bump_boot_version,
    channel_id_by_name,
    create_bench_team,
    issue_tokens,
    join_channel,
    mint_ids,
    user_slack_id,
)
from bench.cluster import Cluster, add_server_args  # noqa: E402
from bench.stats import fmt_ms, quantiles_ms, timed  # noqa: E402


@dataclass(frozen=True)
class World:
    team: BenchTeam
    me: int
    token: str
    my_channels: int
    members: int
    channels: int


@dataclass
class Timing:
    label: str
    secs: list[float]
    size: int = 0
    wire_size: int = 0  # bytes as sent: the size unless the answer came gzip'd
    gzip_size: int = 0  # gzip.compress'd at level 9, for reference
    errors: int = 0
    shape: str = ""


def build(args: argparse.Namespace) -> World:
    """The big team, in bulk; the measured member is the first bulk member."""
    from chatproject.dbrouter import on_shard
    from messaging.models import Channel, ChannelMember, Message

    rng = random.Random(7)
    team = create_bench_team("boot")
    members = add_members(team, args.members)
    me = members[0]
    general = channel_id_by_name(team, "general")
    random_channel = channel_id_by_name(team, "random")
    join_channel(team, general, members)
    join_channel(team, random_channel, [me, *rng.sample(members[1:], min(len(members) - 1, 500))])

    extra = max(0, args.channels - 2)
    mine = max(0, min(extra, args.my_channels - 2))
    specs = []
    for i in range(extra):
        people = set(rng.sample(members[1:], min(len(members) - 1, args.channel_members)))
        if i < mine:
            people.add(me)
        creator = next(iter(people))
        kind = "private" if i % 10 == 9 else "public"
        specs.append(ChannelSpec(f"ch-{i:05d}", kind, sorted(people), creator))
    for other in members[1 : 1 + args.dms]:
        low, high = sorted((me, other))
        specs.append(ChannelSpec(None, "im", [me, other], None, dm_key=f"{low}-{high}"))
    created = add_channels(team, specs)
    my_channel_ids = [general, random_channel, *created[:mine], *created[extra:]]
    members_of = {general: members, random_channel: members[:500]}
    members_of.update({cid: s.member_ids for cid, s in zip(created, specs, strict=True)})

    # Messages in the member's conversations: a quarter unread, one in ten mentions them.
    per = args.messages
    ids = mint_ids(team.shard, per * len(my_channel_ids))
    base = int((time.time() - 86400) * 1_000_000)
    rows, last = [], {}
    for c, channel_id in enumerate(my_channel_ids):
        others = [m for m in members_of[channel_id][:50] if m != me] or [me]
        for n in range(per):
            ts = base + (c * per + n) * 1000
            mention = n % 10 == 3
            rows.append(
                Message(
                    id=ids[c * per + n],
                    team_id=team.team_id,
                    channel_id=channel_id,
                    ts=ts,
                    user_id=rng.choice(others),
                    text=(f"<@{user_slack_id(me)}> " if mention else "")
                    + f"message {n} in conversation {c}: the quick brown fox jumps over the lazy dog",
                    mentions=[me] if mention else [],
                )
            )
        last[channel_id] = (base + (c * per + per - 1) * 1000, base + (c * per + per * 3 // 4) * 1000)
    with on_shard(team.shard):
        Message.objects.bulk_create(rows, batch_size=5000)
        for channel_id, (latest, read) in last.items():
            Channel.objects.filter(id=channel_id).update(last_ts=latest, latest_ts=latest)
            ChannelMember.objects.filter(channel_id=channel_id, member_id=me).update(last_read=read)
    (token,) = issue_tokens(team, [me])
    bump_boot_version(team)
    analyze(team)
    return World(team, me, token, len(my_channel_ids), args.members + 2, args.channels)


class RawClient:
    """One keep-alive connection that returns raw bodies: sizes are what went over the
    wire, and a 5 MB boot is not decoded inside the timed part."""

    def __init__(self, base_url: str, token: str, accept_gzip: bool = False) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if accept_gzip:
            self.headers["Accept-Encoding"] = "gzip"
        self.connection: http.client.HTTPConnection | None = None
        self.wire_bytes = 0  # of the last answer, as sent (gzip'd when the server chose to)

    def call(self, method: str, body: dict[str, Any], decode: bool = True) -> tuple[float, bytes | None]:
        """(seconds, body) of one call; the body is None when the call failed. A gzip'd
        answer is decoded after the clock stops (what the server costs, not the client),
        unless not `decode` (then only its first bytes are, to check it is ok)."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        started = time.perf_counter()
        try:
            self.connection.request("POST", f"/api/{method}", json.dumps(body).encode(), self.headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return time.perf_counter() - started, None
        elapsed = time.perf_counter() - started
        self.wire_bytes = len(data)
        head = data[:32]
        if response.getheader("Content-Encoding") == "gzip":
            head = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data, 32)
            data = gzip.decompress(data) if decode else data
        head = head.replace(b" ", b"")
        return elapsed, data if response.status == 200 and head.startswith(b'{"ok":true') else None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def measure(
    client: RawClient,
    label: str,
    method: str,
    body: dict[str, Any],
    calls: int,
    before: Callable[[], None] | None = None,
) -> Timing:
    timing = Timing(label, [])
    for _ in range(calls):
        if before is not None:
            before()
        secs, data = client.call(method, body)
        if data is None:
            timing.errors += 1
            continue
        timing.secs.append(secs)
        if not timing.size:
            timing.size = len(data)
            timing.wire_size = client.wire_bytes
            timing.gzip_size = len(gzip.compress(data))
            timing.shape = describe(json.loads(data))
    return timing


def wave(base_url: str, token: str, size: int, waves: int, bump: Callable[[], None]) -> Timing:
    """`size` full boots (gzip) at once right after a change, `waves` times: one process
    builds the team-wide part, the others wait for it rather than build it again."""
    timing = Timing(f"rtm.start full gzip, {size} at once", [])
    clients = [RawClient(base_url, token, accept_gzip=True) for _ in range(size)]
    for client in clients:
        client.call("rtm.connect", {})  # connected before the clock starts
    try:
        with ThreadPoolExecutor(max_workers=size) as pool:
            for _ in range(waves):
                bump()
                gate = threading.Barrier(size)

                def one(client: RawClient, gate: threading.Barrier = gate) -> tuple[float, bytes | None]:
                    gate.wait()
                    return client.call("rtm.start", {}, decode=False)

                for secs, data in pool.map(one, clients):
                    if data is None:
                        timing.errors += 1
                    else:
                        timing.secs.append(secs)
                        timing.wire_size = len(data)
    finally:
        for client in clients:
            client.close()
    return timing


def describe(boot: dict[str, Any]) -> str:
    keys = ("users", "channels", "groups", "ims", "mpims")
    return ", ".join(f"{len(boot[k])} {k}" for k in keys if k in boot)


def count_queries(world: World) -> list[tuple[str, dict[str, list[str]]]]:
    """SQL queries per call on each database, in this process (token cache warmed first)."""
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world.token}"}

    def run(method: str, body: dict[str, Any]) -> dict[str, list[str]]:
        with contextlib.ExitStack() as stack:
            captures = {a: stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections}
            response = client.post(f"/api/{method}", data=body, **headers)
        if response.status_code != 200 or not response.content[:32].replace(b" ", b"").startswith(
            b'{"ok":true'
        ):
            raise SystemExit(f"in-process {method} failed: {response.content[:300]!r}")
        return {a: [q["sql"] for q in c.captured_queries] for a, c in captures.items()}

    run("rtm.connect", {})  # fills the token and team-directory caches
    rows = [("rtm.connect", run("rtm.connect", {}))]
    bump_boot_version(world.team)
    rows.append(("rtm.start full, cold", run("rtm.start", {})))
    rows.append(("rtm.start full, cached", run("rtm.start", {})))
    rows.append(("rtm.start lean, cached", run("rtm.start", {"lean": "true"})))
    rows.append(("rtm.start no_latest, cached", run("rtm.start", {"no_latest": "true"})))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000, help="members besides owner and bot")
    parser.add_argument("--channels", type=int, default=2_000, help="channels including #general, #random")
    parser.add_argument("--channel-members", type=int, default=10, help="members of each other channel")
    parser.add_argument("--my-channels", type=int, default=50, help="channels the measured member is in")
    parser.add_argument("--dms", type=int, default=10, help="DMs of the measured member")
    parser.add_argument("--messages", type=int, default=20, help="messages in each of those")
    parser.add_argument("--connect-calls", type=int, default=200)
    parser.add_argument("--cold-calls", type=int, default=20, help="rtm.start calls after a bump")
    parser.add_argument("--cached-calls", type=int, default=50)
    parser.add_argument("--wave", type=int, default=20, help="boots at once after a change (0: none)")
    parser.add_argument("--waves", type=int, default=3, help="how many such waves")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of each counted call")
    parser.add_argument("--quick", action="store_true", help="2,000 members, 400 channels, fewer calls")
    add_server_args(parser, daphnes=1)
    args = parser.parse_args()
    if args.quick:
        args.members, args.channels = 2_000, 400
        args.connect_calls, args.cold_calls, args.cached_calls = 100, 5, 20

    with Cluster.from_args(args) as cluster:
        with timed(f"team with {args.members} members, {args.channels} channels (bulk ORM)"):
            world = build(args)
        print(
            f"team {world.team.domain} on {world.team.shard}; the measured member is in "
            f"{world.my_channels} conversations ({args.dms} DMs), {args.messages} messages each",
            flush=True,
        )
        plain = RawClient(cluster.daphnes[0].http, world.token)
        zipped = RawClient(cluster.daphnes[0].http, world.token, accept_gzip=True)

        def bump() -> None:
            bump_boot_version(world.team)

        timings = []
        try:
            measure(plain, "warm", "rtm.connect", {}, 3)
            # A server that has booted before: thread pools, time zones, statements.
            measure(zipped, "warm", "rtm.start", {}, 1, bump)
            measure(plain, "warm", "rtm.start", {"lean": True}, 1, bump)
            print("timing rtm.connect ...", flush=True)
            timings.append(measure(plain, "rtm.connect", "rtm.connect", {}, args.connect_calls))
            for label, body in (("full", {}), ("lean", {"lean": True})):
                for client, encoding in ((zipped, "gzip"), (plain, "identity")):
                    print(f"timing rtm.start {label} ({encoding}), cold and cached ...", flush=True)
                    name = f"rtm.start {label} {encoding}"
                    timings.append(measure(client, f"{name}, cold", "rtm.start", body, args.cold_calls, bump))
                    measure(client, "warm", "rtm.start", body, 1)
                    timings.append(measure(client, f"{name}, cached", "rtm.start", body, args.cached_calls))
            if args.wave:
                print(
                    f"timing {args.waves} waves of {args.wave} boots at once after a change ...", flush=True
                )
                timings.append(wave(cluster.daphnes[0].http, world.token, args.wave, args.waves, bump))
            timings.append(
                measure(
                    zipped,
                    "rtm.start no_latest gzip, cached",
                    "rtm.start",
                    {"no_latest": True},
                    args.cached_calls,
                )
            )
        finally:
            plain.close()
            zipped.close()
        print("counting SQL per call in-process ...", flush=True)
        queries = count_queries(world)

        print()
        print(
            f"boot in a team of {world.members} members and {world.channels} channels "
            f"(measured member in {world.my_channels} conversations), one daphne, sequential calls"
        )
        print(
            f"{'call':<36}{'calls':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'bytes':>11}{'wire':>11}"
            f"{'gzip -9':>10}  payload"
        )
        for t in timings:
            p50, p99, worst = quantiles_ms(t.secs)
            errors = f" ({t.errors} errors)" if t.errors else ""
            print(
                f"{t.label:<36}{len(t.secs):>6}{fmt_ms(p50):>9}{fmt_ms(p99):>9}{fmt_ms(worst):>9}"
                f"{t.size:>11,}{t.wire_size:>11,}{t.gzip_size:>10,}  {t.shape}{errors}"
            )
        print()
        aliases = list(queries[0][1])
        print("SQL queries per call, in-process (django.test.Client, CaptureQueriesContext):")
        print(f"{'call':<30}" + "".join(f"{a:>10}" for a in aliases) + f"{'total':>8}")
        for label, sql in queries:
            counts = {a: len(sql[a]) for a in aliases}
            print(
                f"{label:<30}" + "".join(f"{counts[a]:>10}" for a in aliases) + f"{sum(counts.values()):>8}"
            )
        if args.show_sql:
            for label, sql in queries:
                for alias, statements in sql.items():
                    for statement in statements:
                        print(f"  {label} @{alias}: {' '.join(statement.split())[:160]}")
        for problem in cluster.check_daphnes()[:10]:
            print("daphne log: " + problem)
        print(
            f"note: client and server share this machine's {os.cpu_count()} cores (and anything else "
            "running on it): figures are noisy; load average %.2f %.2f %.2f" % os.getloadavg()
        )


if __name__ == "__main__":
    main()
