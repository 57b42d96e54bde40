"""The web client's speed in headless Chromium, in a big team.

    .venv/bin/python bench/client_speed.py            # 10,000 members, 2,000 channels
    .venv/bin/python bench/client_speed.py --quick    # 2,000 members, 400 channels

Builds a team in bulk (like bench/boot.py): --members members, --channels channels, the
measured member (the team's owner, signed in through a session like the sign-in form
makes) in --my-channels of them plus --dms DMs, each with --messages messages, and one
channel of --big-messages messages. Then, in Debian's chromium driven by Playwright:

  first meaningful paint  navigation start -> the sidebar and the open channel's messages
                          on screen (the client's `chat-first-paint` mark), --loads loads;
                          first-contentful-paint alongside (target: <= 1.5 s)
  channel switch          click in the sidebar -> that channel's messages painted, first
                          visit (history fetched) and revisit (target: <= 150 ms)
  scroll-back             the big channel: scrolling to the top --pages times loads one
                          conversations.history page each; messages in the DOM and
                          requests made are printed (it must not load them all)

Starts the embedded PostgreSQL and Redis of its own data dir and one daphne with rate
limits off (see bench/cluster.py), and stops what it started.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
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
    channel_id_by_name,
    create_bench_team,
    join_channel,
    mint_ids,
    slack_channel_id,
)
from bench.cluster import Cluster, add_server_args  # noqa: E402
from bench.stats import timed  # noqa: E402

SWITCH_JS = """async ([id, marker]) => {
  const started = performance.now();
  document.querySelector(`#sidebar a[data-id="${id}"]`).click();
  await new Promise((resolve) => {
    const check = () => {
      const rows = document.querySelectorAll('#messages .msg .text');
      const last = rows[rows.length - 1];
      if (last && last.textContent.includes(marker)) resolve();
      else requestAnimationFrame(check);
    };
    check();
  });
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return performance.now() - started;
}"""


def build(args: argparse.Namespace) -> tuple[BenchTeam, list[tuple[str, str]], str]:
    """The team; returns it, the measured member's (channel id, marker) list, and the big channel."""
    from chatproject.dbrouter import on_shard
    from messaging.models import Channel, Message

    rng = random.Random(11)
    team = create_bench_team("client")
    me = team.owner_id
    members = add_members(team, args.members)
    general = channel_id_by_name(team, "general")
    join_channel(team, general, members)
    specs = []
    for i in range(args.channels - 2):
        people = set(rng.sample(members, args.channel_members))
        if i < args.my_channels:
            people.add(me)
        specs.append(ChannelSpec(f"ch-{i:05d}", "private" if i % 10 == 9 else "public", sorted(people), me))
    specs.append(ChannelSpec("big", "public", [me, *members[:20]], me))
    for other in members[: args.dms]:
        low, high = sorted((me, other))
        specs.append(ChannelSpec(None, "im", [me, other], None, dm_key=f"{low}-{high}"))
    created = add_channels(team, specs)
    mine = [general, *created[: args.my_channels], *created[len(specs) - args.dms :]]
    big = created[args.channels - 2]
    counts = {c: args.messages for c in mine} | {big: args.big_messages}
    ids = iter(mint_ids(team.shard, sum(counts.values())))
    base = int((time.time() - 3 * 86400) * 1_000_000)
    rows, latest = [], {}
    for c, (channel_id, count) in enumerate(counts.items()):
        for n in range(count):
            ts = base + c * 10_000_000 + n * 1000 if channel_id != big else base + n * 20_000_000
            rows.append(
                Message(
                    id=next(ids),
                    team_id=team.team_id,
                    channel_id=channel_id,
                    ts=ts,
                    user_id=rng.choice(members[:200]),
                    text=f"message {n} of conversation {c} (mark-{channel_id}): the quick *brown* fox "
                    f"jumps over the `lazy` dog :tada: <https://example.com|a link>",
                )
            )
            latest[channel_id] = ts
    with on_shard(team.shard):
        Message.objects.bulk_create(rows, batch_size=5000)
        for channel_id, ts in latest.items():
            Channel.objects.filter(id=channel_id).update(last_ts=ts, latest_ts=ts)
    bump_boot_version(team)
    switch_targets = [
        (slack_channel_id(c, private=i % 10 == 9), f"mark-{c}") for i, c in enumerate(created[:20])
    ]
    return team, [t for t in switch_targets if t[0].startswith("C")], slack_channel_id(big)


def session_cookie(team: BenchTeam) -> dict[str, str]:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from teams.auth import SESSION_TEAM_KEY
    from teams.models import Account

    account = Account.objects.get(email=f"owner@{team.domain}.test")
    session = SessionStore()
    session.update(
        {
            SESSION_KEY: str(account.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: account.get_session_auth_hash(),
            SESSION_TEAM_KEY: team.team_id,
        }
    )
    session.save()
    return {"name": settings.SESSION_COOKIE_NAME, "value": session.session_key or ""}


def print_profile(profile: dict, top: int = 25) -> None:
    """Time per function over the channel switches (Chrome's sampling profiler): self
    time, and total time with what it called."""
    from collections import Counter

    nodes = {n["id"]: n for n in profile["nodes"]}
    self_us: Counter[int] = Counter()
    for sample, delta in zip(profile.get("samples", []), profile.get("timeDeltas", []), strict=False):
        self_us[sample] += delta
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
    name = {
        i: f"{n['callFrame']['functionName'] or '(anonymous)'} "
        f"{n['callFrame']['url'].rsplit('/', 1)[-1]}:{n['callFrame']['lineNumber'] + 1}"
        for i, n in nodes.items()
    }
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for node_id, micros in self_us.items():
        own[name[node_id]] += micros
        seen, current = set(), node_id
        while current is not None:  # every distinct function on the stack gets the sample
            if name[current] not in seen:
                seen.add(name[current])
                total[name[current]] += micros
            current = parent.get(current)
    print(f"  {'total ms':>9} {'self ms':>9}  function")
    for fn, micros in total.most_common(top):
        print(f"  {micros / 1000:9.1f} {own[fn] / 1000:9.1f}  {fn}")


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"


def measure(base_url: str, cookie: dict[str, str], targets: list[tuple[str, str]], big: str, args) -> None:
    from playwright.sync_api import sync_playwright

    from chatproject.chromium import CHROMIUM
    from tests.browser import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_cookies([{**cookie, "url": base_url}])
        page = context.new_page()
        page.set_default_timeout(60_000)

        paints, contentful = [], []
        for load in range(args.loads + 1):  # the first load warms the server's boot cache
            page.goto(f"{base_url}/?load={load}")  # a new document each time, not a hash change
            page.wait_for_function("() => performance.getEntriesByName('chat-first-paint').length > 0")
            paints.append(page.evaluate("performance.getEntriesByName('chat-first-paint')[0].startTime"))
            contentful.append(
                page.evaluate(
                    "(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: 0}).startTime"
                )
            )
        boot_size = page.evaluate(
            "performance.getEntriesByType('resource').filter(r => r.name.endsWith('/api/rtm.start'))"
            "[0].encodedBodySize"
        )
        print(f"first meaningful paint ({args.loads} loads after one warm-up): {summary(paints[1:])}")
        print(f"  first contentful paint:                         {summary(contentful[1:])}")
        print(f"  cold server cache, first load:                  {paints[0]:7.1f} ms")
        print(f"  rtm.start body: {boot_size:,} bytes")

        first, again = [], []
        profiler = context.new_cdp_session(page) if args.profile else None
        if profiler:
            profiler.send("Profiler.enable")
            profiler.send("Profiler.start")
        for channel_id, marker in targets:
            first.append(page.evaluate(SWITCH_JS, [channel_id, marker]))
        for channel_id, marker in targets:
            again.append(page.evaluate(SWITCH_JS, [channel_id, marker]))
        if profiler:
            print_profile(profiler.send("Profiler.stop")["profile"])
        fetches = page.evaluate(
            "performance.getEntriesByType('resource')"
            ".filter(r => r.name.endsWith('/api/conversations.history')).map(r => r.duration)"
        )
        print(f"channel switch, first visit ({len(first)} channels): {summary(first)}")
        print(f"  of which conversations.history requests:  {summary(fetches)}")
        print(f"channel switch, revisit:                 {summary(again)}")

        requests: list[str] = []
        page.on("request", lambda r: "conversations.history" in r.url and requests.append(r.url))
        page.goto(f"{base_url}/#/{big}")
        page.wait_for_selector("#messages .msg")
        page.wait_for_timeout(300)
        rows = [page.locator("#messages .msg").count()]
        page_times = []
        for _ in range(args.pages):
            before = len(requests)
            started = time.perf_counter()
            page.evaluate("document.getElementById('messages').scrollTop = 0")
            page.wait_for_function(
                f"() => document.querySelectorAll('#messages .msg').length > {rows[-1]}", timeout=10_000
            )
            page_times.append((time.perf_counter() - started) * 1000)
            rows.append(page.locator("#messages .msg").count())
            assert len(requests) > before
        print(
            f"scroll-back in a channel of {args.big_messages:,} messages: {len(requests)} history requests, "
            f"messages in the DOM {' -> '.join(map(str, rows))} (not all {args.big_messages:,}); "
            f"per page {summary(page_times)}"
        )
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=2_000)
    parser.add_argument("--channel-members", type=int, default=10)
    parser.add_argument("--my-channels", type=int, default=50)
    parser.add_argument("--dms", type=int, default=10)
    parser.add_argument(
        "--messages", type=int, default=60, help="messages in each of the member's conversations"
    )
    parser.add_argument("--big-messages", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print where the switches spend CPU")
    add_server_args(parser, daphnes=1)
    args = parser.parse_args()
    if args.quick:
        args.members, args.channels, args.loads = 2_000, 400, 5
    with Cluster.from_args(args) as cluster:
        with timed(f"team with {args.members} members, {args.channels} channels (bulk ORM)"):
            team, targets, big = build(args)
        print(f"team {team.domain}: the owner is in {args.my_channels + 1} channels and {args.dms} DMs")
        measure(cluster.daphnes[0].http, session_cookie(team), targets, big, args)


if __name__ == "__main__":
    main()
