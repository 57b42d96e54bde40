"""Presence fan-out: subscriptions (the product) against broadcast-to-everyone, one run.

    .venv/bin/python bench/presence.py            # 2,000 online, 50 subscriptions each, 60 s
    .venv/bin/python bench/presence.py --quick    # 500 online, 20 s

It starts the embedded PostgreSQL and Redis of its own data dir (--data-dir; left running
if they already were) and --daphnes daphne processes (CHAT_RATE_LIMITS=0, open
admission), builds a team of --online members in bulk, and opens one RTM socket per
member (rtm.connect with batch_presence_aware, as the web client does), spread over the
daphnes and a few receiver processes. Every member is then online (active).

Then phases of --secs each, on the same sockets (after an idle one, see below):

  subscribed  each socket sends presence_sub for --subs random other members; the product
              pushes a change only to the sockets subscribed to that member, batched
              (PRESENCE_BATCH_SECS).
  broadcast   the baseline: sockets drop their subscriptions (presence_sub []), and every
              change is also published to the team's channel-layer group, so every socket
              of the team gets it, through the same per-socket batching (a best case for
              broadcast: one publish per change, each daphne fans out locally).

In each phase, --change-pct percent of the members change state per minute: this process
picks a random member and toggles them between away and auto with
presence.state.set_manual_presence, the function behind users.setPresence (called here,
not over HTTP, so daphne's CPU is the fan-out alone). Counted per phase: changes,
presence_change frames and (user, state) entries the sockets received, the entries
expected, and CPU seconds of daphne, Redis and PostgreSQL (ServerProbe). An idle phase
first (no changes) measures what the open sockets cost anyway (heartbeats every 30 s per
socket, pings); "above idle" is a phase's server CPU minus that, for its length.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bulk_team import BenchTeam, add_members, create_bench_team, issue_tokens, user_slack_id  # noqa: E402
from bench.cluster import Cluster, add_server_args  # noqa: E402
from bench.probes import ServerProbe  # noqa: E402
from bench.receivers import Receivers, merge_counters, socket_specs, wait_for_quiet  # noqa: E402
from bench.stats import timed  # noqa: E402

SERVER_GROUPS = ("daphne", "redis", "postgres")


@dataclass
class Phase:
    label: str
    changes: int  # state changes announced (a toggle always changes an online member's state)
    expected: int  # (user, state) entries the sockets should receive
    frames: int
    entries: int
    secs: float
    cpu: dict[str, float]

    @property
    def server_cpu(self) -> float:
        return sum(self.cpu.get(g, 0.0) for g in SERVER_GROUPS)


def run_phase(
    label: str,
    args: argparse.Namespace,
    team: BenchTeam,
    members: list[int],
    subscribers: dict[int, int],
    receivers: Receivers,
    probe: ServerProbe,
    broadcast: bool,
    change_pct: float,
    away: set[int],
) -> Phase:
    from django.conf import settings

    from messaging.events import publish_to_group, team_group
    from presence import state
    from teams import ids

    rng = random.Random(label)
    interval = 60.0 / (len(members) * change_pct / 100) if change_pct else args.secs * 2
    receivers.call("phase", tag="presence", want=0)
    before = probe.cpu_seconds()
    started = time.monotonic()
    toggles = changes = expected = 0
    print(f"phase {label}: {change_pct:g}% of members change per minute, for {args.secs:g} s ...", flush=True)
    while (now := time.monotonic()) < started + args.secs:
        due = started + (toggles + 1) * interval
        if due > now:
            time.sleep(min(due, started + args.secs) - now)
            continue
        member = rng.choice(members)
        wanted = "auto" if member in away else "away"
        result = state.set_manual_presence(team.team_id, member, wanted)
        if wanted == "away":
            away.add(member)
        else:
            away.discard(member)
        toggles += 1
        if not result.changed:
            continue
        changes += 1
        if broadcast:
            publish_to_group(
                team_group(team.team_id),
                {
                    "type": "presence.change",
                    "user": ids.encode(ids.USER, member),
                    "presence": result.presence,
                },
            )
            expected += len(members)
        else:
            expected += subscribers.get(member, 0)
    time.sleep(settings.PRESENCE_BATCH_SECS)
    got = wait_for_entries(receivers, expected)
    secs = time.monotonic() - started
    after = probe.cpu_seconds()
    return Phase(
        label,
        changes,
        expected,
        sum(r["presence_frames"] for r in got),
        sum(r["presence_entries"] for r in got),
        secs,
        {k: after[k] - before.get(k, 0.0) for k in after},
    )


def wait_for_entries(receivers: Receivers, expected: int, stall_secs: float = 10.0) -> list[dict[str, Any]]:
    """The receivers' progress once `expected` presence entries arrived, or none arrived
    for `stall_secs` (a loaded machine may hold a batch back for seconds)."""
    last, since = -1, time.monotonic()
    while True:
        got = receivers.call("progress")
        entries = sum(r["presence_entries"] for r in got)
        if entries != last:
            last, since = entries, time.monotonic()
        if entries >= expected or time.monotonic() - since > stall_secs:
            return got
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--online", type=int, default=2_000, help="members, each with one socket")
    parser.add_argument("--subs", type=int, default=50, help="presence_sub list of each socket")
    parser.add_argument(
        "--change-pct", type=float, default=10.0, help="members changing state per minute, %%"
    )
    parser.add_argument("--secs", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--receivers", type=int, default=4, help="receiver processes")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="per receiver process")
    parser.add_argument("--quick", action="store_true", help="500 online, 20 s phases")
    add_server_args(parser, daphnes=2)
    args = parser.parse_args()
    if args.quick:
        args.online, args.secs = 500, 20.0

    with Cluster.from_args(args) as cluster:
        with timed(f"team with {args.online} members and their tokens (bulk ORM)"):
            team = create_bench_team("presence")
            members = add_members(team, args.online)
            tokens = issue_tokens(team, members)
        specs = socket_specs(tokens, cluster.daphnes, {"batch_presence_aware": True})
        rng = random.Random(11)
        subscriptions = {
            i: rng.sample([m for m in members if m != member], min(args.subs, len(members) - 1))
            for i, member in enumerate(members)
        }
        subscribers: dict[int, int] = {}
        for wanted in subscriptions.values():
            for member in wanted:
                subscribers[member] = subscribers.get(member, 0) + 1
        with Receivers(specs, args.receivers) as receivers:
            with timed(f"opening {len(specs)} sockets"):
                replies = receivers.call("connect", concurrency=args.connect_concurrency)
            failed = sum(r["failed"] for r in replies)
            if failed:
                raise SystemExit(f"{failed} sockets did not open: {dict(merge_counters(replies, 'errors'))}")
            with timed(f"presence_sub of {args.subs} members on every socket, and their answers"):
                receivers.call("phase", tag="presence", want=0)
                receivers.call(
                    "send",
                    frames={
                        i: {"type": "presence_sub", "ids": [user_slack_id(m) for m in wanted]}
                        for i, wanted in subscriptions.items()
                    },
                )
                # Each subscription is answered with the member's current state.
                answers = sum(len(w) for w in subscriptions.values())
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if sum(r["presence_entries"] for r in receivers.call("progress")) >= answers:
                        break
                    time.sleep(0.25)
                wait_for_quiet(receivers, quiet_secs=1.0)
            probe = cluster.probe()
            away: set[int] = set()  # members set away by the bench, across phases
            phases = [
                run_phase(label, args, team, members, subscribers, receivers, probe, False, pct, away)
                for label, pct in (("idle", 0.0), ("subscribed", args.change_pct))
            ]
            with timed("dropping every subscription (presence_sub [])"):
                receivers.call("send", frames={i: {"type": "presence_sub", "ids": []} for i in subscriptions})
                wait_for_quiet(receivers, quiet_secs=2.0)
            phases.append(
                run_phase(
                    "broadcast",
                    args,
                    team,
                    members,
                    subscribers,
                    receivers,
                    probe,
                    True,
                    args.change_pct,
                    away,
                )
            )
            closes = merge_counters(receivers.call("collect"), "closes")

        print()
        print(
            f"presence: {args.online} online (one socket each, {args.daphnes} daphnes), "
            f"{args.subs} subscriptions per socket, {args.change_pct:g}% changing state per minute"
        )
        print(
            f"{'phase':<12}{'secs':>7}{'changes':>9}{'expected':>11}{'entries':>11}{'frames':>10}"
            f"{'daphne s':>10}{'redis s':>9}{'pg s':>7}{'server s':>10}{'above idle':>12}{'ms/change':>11}"
        )
        idle, sub, cast = phases
        for p in phases:
            extra = p.server_cpu - idle.server_cpu * p.secs / idle.secs
            per_change = extra / p.changes * 1000 if p.changes else float("nan")
            cpu = p.cpu
            print(
                f"{p.label:<12}{p.secs:>7.1f}{p.changes:>9}{p.expected:>11,}{p.entries:>11,}{p.frames:>10,}"
                f"{cpu.get('daphne', 0):>10.2f}{cpu.get('redis', 0):>9.2f}{cpu.get('postgres', 0):>7.2f}"
                f"{p.server_cpu:>10.2f}{extra:>12.2f}{per_change:>11.2f}"
            )
        if sub.entries and sub.server_cpu:
            above = [p.server_cpu - idle.server_cpu * p.secs / idle.secs for p in (sub, cast)]
            print(
                f"broadcast / subscribed: {cast.entries / sub.entries:.1f}x the entries, "
                f"{cast.frames / max(1, sub.frames):.1f}x the frames, "
                f"{cast.server_cpu / sub.server_cpu:.1f}x the server CPU "
                f"({above[1] / above[0]:.1f}x above idle)"
                if above[0] > 0
                else ""
            )
        if closes:
            print(f"sockets closed by the server during the run: {dict(closes)}")
        for problem in cluster.check_daphnes()[:10]:
            print("daphne log: " + problem)
        print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        print(
            "note: expected entries are per change; two changes of one member within one batch "
            "window reach a socket as one entry, so entries may fall a little short of expected."
        )


if __name__ == "__main__":
    main()
