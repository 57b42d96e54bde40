"""Realtime fan-out: one channel, N sockets over two daphne processes, a paced poster.

    .venv/bin/python bench/fanout.py                      # 1,000 sockets, 100 posts/s, 30 s
    .venv/bin/python bench/fanout.py --find-max           # step the rate: 50, 100, 200, 400 ...
    .venv/bin/python bench/fanout.py --quick              # 200 sockets, 10 s

It needs no running server: it starts the embedded PostgreSQL and Redis of its own data
dir (--data-dir, default /tmp/chat-bench-rtm; left running if they already were), runs
migrate_all, and starts --daphnes daphne processes with CHAT_RATE_LIMITS=0 and boot and
socket admission at 100,000/s (--product-admission keeps the product's defaults). It
stops everything it started when done.

It creates a team with --sockets members in bulk (ORM), all in one channel with the
owner, one token each. Receivers are bench/light_ws.py clients (an asyncio Protocol per
socket, frames parsed from the receive buffer) in --receivers processes; each socket boots
with rtm.connect and connects to its daphne (each daphne holds an equal block of the
sockets, and each receiver a share of every block). The owner posts chat.postMessage at
--rate posts/s for --seconds (open loop: post n is due at start + n/rate, from several
keep-alive connections), each text carrying the monotonic time it was sent.

How the client measures, cheaply enough not to be the bottleneck: every socket counts the
run's messages and checks event ids (a duplicate or an id going back counts as a dupe) by
finding the id and the run's tag in the raw frame; every --sample-every'th socket (default
10th) also records post-to-receive latency. While posts are counted, a C loop reads the
frames (bench/native_reader.c, built with the machine's compiler): Python's receivers took
as much CPU as both daphnes, on the same two cores. It reads in rounds 0.5 ms apart, so that
the servers' sends do not pay for waking it on every socket (on loopback they do the client's
TCP work too); a frame is read at most that much later. --python-receivers reads them in
Python (asyncio on uvloop) instead, as does a machine with no C compiler.

Reported per rate: delivered/expected (every socket must get every post, once),
post-to-receive latency p50/p99/max over the sampled sockets' deliveries, the chat.postMessage call
time, how long after the last post the last delivery came, and CPU per process group.
With --find-max, shorter runs (--step-seconds) step the rate up through --rates until
one fails to keep up (a message not delivered within --drain-secs of the last post, posts
not taken at the offered rate, or p99 over --keep-up-ms); if the first rate already
fails, the rate is halved instead, down to 1/s. Each step after a failed one starts on
fresh daphne processes and fresh sockets, so a backlog does not carry over. The highest
zero-loss rate, and the highest that also kept up, are printed.

Posts go to the daphnes in turn, so the same processes parse posts and fan out; with
--api-daphne one more daphne takes every post and holds no sockets, which separates
post latency from fan-out cost.

The client shares the machine's cores with the servers (its CPU is shown as `bench`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bulk_team import (  # noqa: E402
    BenchTeam,
    ChannelSpec,
    add_channels,
    add_members,
    bump_boot_version,
    create_bench_team,
    issue_tokens,
    slack_channel_id,
)
from bench.cluster import Cluster, Daphne, add_server_args  # noqa: E402
from bench.native_reader import NativeUnavailable, library  # noqa: E402
from bench.posting import paced_posts, serial_posts  # noqa: E402
from bench.probes import CpuMeter, format_cpu  # noqa: E402
from bench.receivers import (  # noqa: E402
    Receivers,
    describe_error_samples,
    merge_counters,
    socket_specs,
    wait_for_delivery,
    wait_for_quiet,
)
from bench.stats import Hist, fmt_ms, quantiles_ms, timed  # noqa: E402


@dataclass
class StepResult:
    rate: float
    seconds: float
    sockets: int
    posts_planned: int
    posts_ok: int
    post_errors: dict[str, int]
    post_rate: float
    call_p50: float
    call_p99: float
    call_max: float
    lag_p99: float
    expected: int
    delivered: int
    dupes: int
    complete_sockets: int
    hist: Hist
    drain_secs: float
    cpu: dict[str, float]
    closes: dict[str, int]
    handed_back: dict[str, int]
    error_lines: list[str]
    still_arriving: bool

    @property
    def zero_loss(self) -> bool:
        """Every socket got every post that succeeded, once, within the drain window."""
        return self.delivered == self.expected and self.dupes == 0 and not self.closes

    @property
    def sustained(self) -> bool:
        """The server took the posts at the offered rate."""
        return self.posts_ok == self.posts_planned and self.post_rate >= 0.95 * self.rate

    def kept_up(self, keep_up_ms: float) -> bool:
        return self.zero_loss and self.sustained and self.hist.quantile(0.99) <= keep_up_ms

    def verdict(self, keep_up_ms: float) -> str:
        if not self.zero_loss:
            if self.delivered > self.expected and not self.dupes:
                return "MORE than the posts that succeeded: a post answered with an error was delivered"
            return "NOT DELIVERED in time (backlog)" if self.still_arriving else "LOSS"
        if self.kept_up(keep_up_ms):
            return "kept up"
        problems = []
        if not self.sustained:
            problems.append("posting fell behind")
        if self.hist.quantile(0.99) > keep_up_ms:
            problems.append(f"p99 > {keep_up_ms:g} ms")
        return "zero loss; " + ", ".join(problems)


def run_step(
    args: argparse.Namespace,
    cluster: Cluster,
    receivers: Receivers,
    team: BenchTeam,
    channel: str,
    rate: float,
    seconds: float,
    step: int,
) -> StepResult:
    tag = f"fanout-{step}-{rate:g}"
    planned = max(1, round(rate * seconds))
    receivers.call("phase", tag=tag, want=planned)
    # Enough connections that posts taking ~500 ms each still leave at the offered rate.
    threads = args.post_threads or max(8, min(64, math.ceil(rate / 2)))
    meter = CpuMeter(cluster.probe(), receivers.pids)  # the daphnes may have been restarted
    meter.start()
    posts = paced_posts(post_urls(args, cluster), team.owner_token, channel, tag, rate, seconds, threads)
    expected = posts.ok * args.sockets
    delivered, last_arrival = wait_for_delivery(receivers, expected, args.stall_secs, args.drain_secs)
    # Cut off by --drain-secs while messages were still arriving: a backlog, not (yet) a loss.
    still_arriving = delivered < expected and time.monotonic() - last_arrival < args.stall_secs
    cpu = meter.stop()
    replies = receivers.call("collect")
    hist = Hist()
    for reply in replies:
        hist.merge(reply["hist"])
    return StepResult(
        rate=rate,
        seconds=seconds,
        sockets=args.sockets,
        posts_planned=planned,
        posts_ok=posts.ok,
        post_errors=dict(posts.errors),
        post_rate=posts.achieved_rate(),
        call_p50=posts.call_ms(0.5),
        call_p99=posts.call_ms(0.99),
        call_max=posts.call_ms(1.0),
        lag_p99=posts.lag_ms(0.99),
        expected=expected,
        delivered=sum(r["delivered"] for r in replies),
        dupes=sum(r["dupes"] for r in replies),
        complete_sockets=sum(r["complete"] for r in replies),
        hist=hist,
        drain_secs=max(0.0, last_arrival - posts.last_done) if delivered else float("nan"),
        cpu=cpu,
        closes=dict(merge_counters(replies, "closes")),
        handed_back=dict(merge_counters(replies, "handed_back")),
        error_lines=describe_error_samples(replies, team),
        still_arriving=still_arriving,
    )


def socket_daphnes(args: argparse.Namespace, cluster: Cluster) -> list[Daphne]:
    return cluster.daphnes[:-1] if args.api_daphne else cluster.daphnes


def post_urls(args: argparse.Namespace, cluster: Cluster) -> list[str]:
    """Posts go to the API-only daphne with --api-daphne, else round-robin to all."""
    return [cluster.daphnes[-1].http] if args.api_daphne else [d.http for d in cluster.daphnes]


def connect_all(args: argparse.Namespace, receivers: Receivers) -> int:
    """Boot and open every socket (a failed attempt is retried twice); returns how many never did."""
    started = time.monotonic()
    replies = receivers.call("connect", concurrency=args.connect_concurrency)
    errors = merge_counters(replies, "errors")
    failed = sum(r["failed"] for r in replies)
    p50, p99, _ = quantiles_ms([t for r in replies for t in r["times"]])
    print(
        f"connected {args.sockets - failed}/{args.sockets} sockets over "
        f"{len(receivers.pids)} receiver processes in {time.monotonic() - started:.1f} s "
        f"(rtm.connect + open + hello: p50 {p50:.0f} ms, p99 {p99:.0f} ms)",
        flush=True,
    )
    if errors:
        print(f"  failed attempts (retried): {dict(errors)}", flush=True)
    return failed


def print_table(results: list[StepResult], keep_up_ms: float) -> None:
    print()
    print(
        f"{'rate/s':>7}{'posted/s':>9}{'delivered/expected':>24}{'%':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'post p50':>9}{'post p99':>9}{'post max':>9}{'drain s':>8}  verdict"
    )
    for r in results:
        pct = 100.0 * r.delivered / r.expected if r.expected else float("nan")
        verdict = r.verdict(keep_up_ms)
        print(
            f"{r.rate:>7g}{r.post_rate:>9.1f}{f'{r.delivered}/{r.expected}':>24}{pct:>8.2f}"
            f"{fmt_ms(r.hist.quantile(0.5)):>9}{fmt_ms(r.hist.quantile(0.99)):>9}"
            f"{fmt_ms(r.hist.quantile(1.0)):>9}{fmt_ms(r.call_p50):>9}{fmt_ms(r.call_p99):>9}"
            f"{fmt_ms(r.call_max):>9}"
            f"{r.drain_secs:>8.1f}  {verdict}"
        )
    print()
    print("CPU % of one core over each run (posting + drain):")
    for r in results:
        print(f"{r.rate:>7g}/s  {format_cpu(r.cpu)}")
    notes = []
    for r in results:
        if r.post_errors:
            notes.append(f"{r.rate:g}/s: post errors {r.post_errors}")
        if r.dupes:
            notes.append(f"{r.rate:g}/s: {r.dupes} duplicate or out-of-order frames")
        if r.handed_back:
            notes.append(
                f"{r.rate:g}/s: sockets the C loop stopped reading, read in Python only at the end "
                f"(their latency is not the server's): {r.handed_back}"
            )
        if r.closes:
            notes.append(f"{r.rate:g}/s: sockets closed by the server (close code: count): {r.closes}")
        notes += [f"{r.rate:g}/s: {line}" for line in r.error_lines]
        if r.complete_sockets != r.sockets and r.expected:
            notes.append(f"{r.rate:g}/s: {r.sockets - r.complete_sockets} sockets missed messages")
        if r.lag_p99 > 50:
            notes.append(f"{r.rate:g}/s: the poster ran late (p99 {r.lag_p99:.0f} ms behind schedule)")
    for note in notes:
        print("note: " + note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000, help="receiving sockets, one member each")
    parser.add_argument("--rate", type=float, default=100.0, help="posts/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to post")
    parser.add_argument("--receivers", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    parser.add_argument(
        "--sample-every",
        type=int,
        default=10,
        help="JSON-parse and time every frame on every Nth socket; the others only count",
    )
    parser.add_argument(
        "--python-receivers",
        action="store_true",
        help="read the frames in Python (asyncio on uvloop) rather than the C loop",
    )
    parser.add_argument(
        "--find-max",
        action="store_true",
        help="step the rate up through --rates (shorter runs); if the first fails, halve it down to 1/s",
    )
    parser.add_argument("--rates", default="50,100,200,400", help="rates for --find-max")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="run length with --find-max")
    parser.add_argument("--drain-secs", type=float, default=30.0, help="wait at most this after posting")
    parser.add_argument("--stall-secs", type=float, default=10.0, help="stop waiting after no arrivals")
    parser.add_argument("--keep-up-ms", type=float, default=1000.0, help="p99 bound for 'kept up'")
    parser.add_argument("--post-threads", type=int, default=0, help="poster connections (0: by rate)")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="boots in flight per receiver")
    parser.add_argument(
        "--api-daphne",
        action="store_true",
        help="start one more daphne that only takes the posts (no sockets on it)",
    )
    parser.add_argument("--quick", action="store_true", help="200 sockets, 10 s (find-max: 5 s steps)")
    add_server_args(parser, daphnes=2)
    args = parser.parse_args()
    if args.quick:
        args.sockets, args.seconds, args.step_seconds = 200, 10.0, 5.0

    daphnes = args.daphnes + (1 if args.api_daphne else 0)
    native = not args.python_receivers and native_reader_builds()
    with Cluster.from_args(args, daphnes) as cluster:
        with timed(f"team with {args.sockets} members in one channel (bulk ORM)"):
            team = create_bench_team("fanout")
            members = add_members(team, args.sockets)
            (channel_id,) = add_channels(
                team, [ChannelSpec("fanout", "public", [team.owner_id, *members], team.owner_id)]
            )
            tokens = issue_tokens(team, members)
            bump_boot_version(team)
        channel = slack_channel_id(channel_id)
        specs = socket_specs(tokens, socket_daphnes(args, cluster))
        with Receivers(specs, args.receivers, args.sample_every, native) as receivers:
            if connect_all(args, receivers):
                raise SystemExit("not every socket connected; see the daphne logs under the data dir")

            # Warm up: every socket must see a few posts before the clock starts.
            receivers.call("phase", tag="warmup", want=3)
            warm = serial_posts(cluster.daphnes[0].http, team.owner_token, channel, "warmup", 3)
            got, _ = wait_for_delivery(receivers, warm.ok * args.sockets, 10.0, 60.0)
            print(f"warm-up: {got}/{warm.ok * args.sockets} delivered", flush=True)
            wait_for_quiet(receivers, 1.0, 30.0)

            rates = [float(r) for r in args.rates.split(",")] if args.find_max else [args.rate]
            seconds = args.step_seconds if args.find_max else args.seconds
            results: list[StepResult] = []
            step = 0
            queue = list(rates)
            while queue:
                rate = queue.pop(0)
                step += 1
                print(f"posting {rate:g}/s for {seconds:g} s to {args.sockets} sockets ...", flush=True)
                result = run_step(args, cluster, receivers, team, channel, rate, seconds, step)
                results.append(result)
                p50, p99 = result.hist.quantile(0.5), result.hist.quantile(0.99)
                print(
                    f"  delivered {result.delivered}/{result.expected}, p50 {fmt_ms(p50)} ms, "
                    f"p99 {fmt_ms(p99)} ms, posted {result.post_rate:.1f}/s: "
                    f"{result.verdict(args.keep_up_ms)}",
                    flush=True,
                )
                if not args.find_max:
                    break
                if not result.kept_up(args.keep_up_ms):
                    # Past the knee: higher rates only fail harder. While no rate has kept
                    # up yet, halve instead (down to 1/s).
                    none_kept_up = not any(r.kept_up(args.keep_up_ms) for r in results)
                    queue = [rate / 2] if none_kept_up and rate / 2 >= 1 else []
                    if queue:
                        # The servers may still be working through a backlog: start the next
                        # rate on fresh daphne processes and fresh sockets.
                        receivers.call("drop")
                        cluster.restart_daphnes()
                        if connect_all(args, receivers):
                            print("  stopping: not every socket reconnected", flush=True)
                            break
                        receivers.call("phase", tag="warmup", want=1)
                        serial_posts(post_urls(args, cluster)[0], team.owner_token, channel, "warmup", 1)
                        wait_for_delivery(receivers, args.sockets, 10.0, 60.0)
                wait_for_quiet(receivers, 2.0, 60.0)

        print_table(results, args.keep_up_ms)
        if args.find_max:
            zero = [r.rate for r in results if r.zero_loss and r.sustained]
            kept = [r.rate for r in results if r.kept_up(args.keep_up_ms)]
            print(
                f"highest rate posted in full with zero loss: {max(zero):g}/s"
                if zero
                else "none of the rates tried was both posted in full and loss-free",
                f"; highest that also kept p99 <= {args.keep_up_ms:g} ms: {max(kept):g}/s" if kept else "",
                sep="",
            )
        else:
            r = results[0]
            passed = r.zero_loss and r.sustained
            print(
                f"target 100% delivered at {args.rate:g} posts/s to {args.sockets} sockets: "
                f"{100.0 * r.delivered / max(1, r.expected):.2f}% of {r.posts_ok} posts at "
                f"{r.post_rate:.1f}/s: {'PASS' if passed else 'FAIL'}"
                + ("" if r.sustained else " (the server did not take the posts at that rate)")
            )
        for problem in cluster.check_daphnes()[:10]:
            print("daphne log: " + problem)
        print(f"receivers: {'C loop (bench/native_reader.c)' if native else 'Python (asyncio on uvloop)'}")
        print(
            "note: client and servers share this machine's "
            f"{os.cpu_count()} cores (and anything else running on it): figures are noisy."
        )


def native_reader_builds() -> bool:
    try:
        library()
    except NativeUnavailable as exc:
        print(f"note: receivers read in Python: {exc}", flush=True)
        return False
    return True


if __name__ == "__main__":
    main()
