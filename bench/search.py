"""search.messages at scale: a million messages on one shard, four concurrent searchers.

    CHAT_DATA_DIR=/tmp/benchvar .venv/bin/python bench/search.py --messages 1000000

It starts the embedded PostgreSQL/Redis of CHAT_DATA_DIR unless they run (and stops what
it started), migrates, then:

  load    a throwaway team on --shard: --authors members, 40 public and 10 private
          channels, some DMs, and --messages messages written by one INSERT ... SELECT
          per 100k rows. Every message has 4-15 filler words (Zipf-like over a 3,000-word
          vocabulary); a third also say "deploy" (the common term), 10% one of ten medium
          terms (each in ~1% of messages), 1% one of ten uncommon terms (~0.1% each), and
          ~20 messages each one of 100 rare terms.
  index   every message through messaging.search.index (the job's own function), in
          batches, by --index-workers processes: messages/s. Then ANALYZE.
  search  --searchers processes, each a member of a different set of private channels,
          run --queries searches per case through messaging.search.run.search_messages
          (what search.messages calls) at the same time: p50/p99 per term class and sort.
          --warmup first searches every term once, untimed (a running server's buffers
          hold what is searched; right after loading, they hold nothing yet).

The team is deleted afterwards unless --keep; `--team DOMAIN` reuses a kept team and
skips load and index.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

from bench.cluster import setup_embedded_django  # noqa: E402

ROWS_PER_INSERT = 100_000
COMMON = "deploy"
MEDIUM = ("invoice", "kubernetes", "roadmap", "latency", "onboarding")
MEDIUM += ("postgres", "budget", "outage", "sprint", "customer")
UNCOMMON = ("zeppelin", "quartz", "mandolin", "glacier", "origami")
UNCOMMON += ("trombone", "lantern", "saffron", "pelican", "walnut")
RARE_COUNT = 100
RARE_MESSAGES_EACH = 20
MINUTE_US = 60_000_000  # one message a minute: ts stays unique across the team

_INSERT = """
INSERT INTO messaging_message (team_id, channel_id, ts, user_id, username, text, subtype, thread_ts,
                               reply_count, reply_users, is_deleted, mentions, mentions_all)
SELECT %(team)s, ch, ts, author, '', body, '', CASE WHEN r < 0.05 THEN ts END, 0, '{}', false, '{}', false
  FROM (
    SELECT (%(channels)s::bigint[])[1 + floor(power(random(), 1.6) * %(n_channels)s)::int] AS ch,
           %(t0)s + g * %(minute)s::bigint + floor(random() * 50000000)::bigint AS ts,
           (%(authors)s::bigint[])[1 + floor(random() * %(n_authors)s)::int] AS author,
           random() AS r,
           concat_ws(' ',
             (SELECT string_agg((%(vocab)s::text[])[1 + floor(power(random(), 2) * %(n_vocab)s)::int], ' ')
                FROM generate_series(1, 2 + floor(random() * 6)::int + g * 0)),
             CASE WHEN random() < 1.0 / 3 THEN %(common)s END,
             CASE WHEN random() < 0.1 THEN (%(medium)s::text[])[1 + floor(random() * 10)::int] END,
             CASE WHEN random() < 0.01 THEN (%(uncommon)s::text[])[1 + floor(random() * 10)::int] END,
             CASE WHEN random() < %(rare_p)s
                  THEN (%(rare)s::text[])[1 + floor(random() * %(n_rare)s)::int] END,
             (SELECT string_agg((%(vocab)s::text[])[1 + floor(power(random(), 2) * %(n_vocab)s)::int], ' ')
                FROM generate_series(1, 2 + floor(random() * 8)::int + g * 0)),
             CASE WHEN random() < 0.05 THEN 'https://example.com/doc/' || g END
           ) AS body
      FROM generate_series(%(lo)s, %(hi)s) AS g
  ) AS rows
"""


def words(rng: random.Random, count: int, syllables: int, avoid: set[str]) -> list[str]:
    """Pronounceable made-up words, so the stemmer treats them as distinct terms."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    found: list[str] = []
    while len(found) < count:
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if word not in avoid:
            avoid.add(word)
            found.append(word)
    return found


def create_world(shard: str, n_authors: int, n_searchers: int) -> dict[str, Any]:
    """A team with authors, channels (searcher k is in private channels k, k+n, ...) and DMs."""
    from chatproject.dbrouter import on_shard
    from messaging.actions.channels import create_channel, invite
    from messaging.actions.dms import open_dm
    from teams.actions import create_member, create_team
    from teams.auth import caller_from_token

    domain = f"searchbench-{secrets.token_hex(3)}"
    created = create_team(domain, "Search bench", f"owner@{domain}.test", shard=shard)
    team = created.team
    people = [create_member(team, f"m{n}@{domain}.test", name=f"member{n}") for n in range(n_authors)]
    owner = caller_from_token(created.owner_token)
    channels: list[int] = []
    with on_shard(team.shard):
        channels += [create_channel(owner, f"topic-{n}", is_private=False).id for n in range(40)]
        for n in range(10):
            private = create_channel(owner, f"private-{n}", is_private=True)
            invite(owner, private.slack_id, [people[n % n_searchers][0].slack_id])
            channels.append(private.id)
        for n in range(20):
            dm_owner = caller_from_token(people[n % n_authors][1])
            channels.append(open_dm(dm_owner, [people[(n * 7 + 1) % n_authors][0].slack_id])[0].id)
    random.Random(7).shuffle(channels)  # which channels are busiest is then arbitrary
    return {
        "domain": domain,
        "shard": team.shard,
        "team_id": team.id,
        "channels": channels,
        "authors": [p[0].id for p in people],
        "tokens": [p[1] for p in people[:n_searchers]],
    }


def load(world: dict[str, Any], total: int, vocab: list[str], rare: list[str]) -> None:
    from django.db import connections

    t0 = (int(time.time()) - total * 60) * 1_000_000
    params = {
        "team": world["team_id"],
        "channels": world["channels"],
        "n_channels": len(world["channels"]),
        "authors": world["authors"],
        "n_authors": len(world["authors"]),
        "t0": t0,
        "minute": MINUTE_US,
        "vocab": vocab,
        "n_vocab": len(vocab),
        "common": COMMON,
        "medium": list(MEDIUM),
        "uncommon": list(UNCOMMON),
        "rare": rare,
        "n_rare": len(rare),
        "rare_p": min(1.0, RARE_COUNT * RARE_MESSAGES_EACH / total),
    }
    started = time.monotonic()
    with connections[world["shard"]].cursor() as cursor:
        for lo in range(0, total, ROWS_PER_INSERT):
            hi = min(total, lo + ROWS_PER_INSERT) - 1
            cursor.execute(_INSERT, {**params, "lo": lo, "hi": hi})
            print(f"  loaded {hi + 1:>9,} messages  ({time.monotonic() - started:.0f} s)", flush=True)


def index_slice(shard: str, team_id: int, worker: int, workers: int) -> int:
    """Index the batches numbered worker, worker + workers, ... of the team (child process)."""
    import django

    django.setup()
    from django.db import connections

    from messaging.search.index import BATCH_SIZE, index_messages

    with connections[shard].cursor() as cursor:
        cursor.execute("SELECT id FROM messaging_message WHERE team_id = %s ORDER BY ts, id", [team_id])
        all_ids = [row[0] for row in cursor.fetchall()]
    batches = [all_ids[i : i + BATCH_SIZE] for i in range(0, len(all_ids), BATCH_SIZE)]
    return sum(index_messages(shard, team_id, batch) for batch in batches[worker::workers])


def index_all(world: dict[str, Any], workers: int) -> None:
    from django.db import connections

    context = multiprocessing.get_context("spawn")
    args = [(world["shard"], world["team_id"], n, workers) for n in range(workers)]
    started = time.monotonic()
    with context.Pool(workers) as pool:
        done = sum(pool.starmap(index_slice, args))
    secs = time.monotonic() - started
    print(f"  indexed {done:,} messages in {secs:.1f} s with {workers} worker(s): {done / secs:,.0f} msg/s")
    started = time.monotonic()
    with connections[world["shard"]].cursor() as cursor:
        cursor.execute("VACUUM ANALYZE messaging_message")
    print(f"  VACUUM ANALYZE {time.monotonic() - started:.1f} s")


def search_worker(
    token: str, cases: list[tuple[str, str, list[str]]], queries: int, seed: int, warm: tuple[int, int] | None
) -> dict:
    """Run `queries` searches per case; returns {case: [seconds, ...]} (child process).
    With `warm` = (n, of), first search its share of every case's terms once, untimed."""
    import django

    django.setup()
    from chatproject.dbrouter import on_shard
    from messaging.search.query import parse_query
    from messaging.search.run import search_messages
    from teams.auth import caller_from_token

    rng = random.Random(seed)
    caller = caller_from_token(token)
    timings: dict[str, list[float]] = {}
    with on_shard(caller.shard):
        if warm is not None:
            for _, sort, terms in cases:
                for text in terms[warm[0] :: warm[1]]:
                    search_messages(caller, parse_query(text), sort=sort, count=20, page=1)
        for name, sort, terms in cases:
            for _ in range(queries):
                query = parse_query(rng.choice(terms))
                started = time.perf_counter()
                search_messages(caller, query, sort=sort, count=20, page=1)
                timings.setdefault(name, []).append(time.perf_counter() - started)
    return timings


def run_searches(world: dict[str, Any], queries: int, rare: list[str], warmup: bool = False) -> None:
    medium = list(MEDIUM)
    common = [COMMON]
    cases: list[tuple[str, str, list[str]]] = []
    for sort in ("score", "timestamp"):
        cases += [
            (f"rare     {sort}", sort, rare),
            (f"uncommon {sort}", sort, list(UNCOMMON)),
            (f"medium   {sort}", sort, medium),
            (f"common   {sort}", sort, common),
        ]
    cases += [
        ("common in:#channel", "timestamp", [f"{COMMON} in:#topic-{n}" for n in range(40)]),
        ("medium -common", "score", [f"{m} -{COMMON}" for m in medium]),
        ('"medium common"', "score", [f'"{m} {COMMON}"' for m in medium]),
        ("from:@member", "score", [f"{COMMON} from:@member{n}" for n in range(len(world["authors"]))]),
    ]
    context = multiprocessing.get_context("spawn")
    tokens = world["tokens"]
    # Every searcher walks the cases in the same order, so each case runs 4-way concurrent.
    shares = [(n, len(tokens)) if warmup else None for n in range(len(tokens))]
    args = [(token, cases, queries, n, shares[n]) for n, token in enumerate(tokens)]
    with context.Pool(len(tokens)) as pool:
        results = pool.starmap(search_worker, args)
    load = " / ".join(f"{n:.1f}" for n in os.getloadavg())
    warmed = ", after one untimed pass over every term" if warmup else ""
    print(f"  {len(tokens)} concurrent searchers, {queries} searches each per case{warmed} (ms)")
    print(f"  load average when done {load}:")
    print(f"  {'case':<24}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for name, _, _ in cases:
        samples = sorted(s for result in results for s in result[name])
        p = statistics.quantiles(samples, n=100, method="inclusive")
        row = [p[49], p[89], p[98], samples[-1]]
        print(f"  {name:<24}" + "".join(f"{v * 1000:>8.1f}" for v in row))


def delete_team(world: dict[str, Any]) -> None:
    from django.apps import apps
    from django.db import connections, transaction

    from chatproject.dbrouter import is_shard_model
    from teams.models import Account, ApiToken, Team, TeamMembership

    # One transaction: the foreign keys are checked at commit, whatever the delete order.
    with transaction.atomic(using=world["shard"]), connections[world["shard"]].cursor() as cursor:
        for model in apps.get_models():
            if is_shard_model(model) and any(f.name == "team_id" for f in model._meta.fields):
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE team_id = %s", [world["team_id"]])
    ApiToken.objects.filter(team_id=world["team_id"]).delete()
    TeamMembership.objects.filter(team_id=world["team_id"]).delete()
    Team.objects.filter(id=world["team_id"]).delete()
    Account.objects.filter(email__endswith=f"@{world['domain']}.test").delete()
    print(f"  deleted team {world['domain']}")


def reuse_world(domain: str, n_searchers: int) -> dict[str, Any]:
    from chatproject.dbrouter import on_shard
    from teams.models import ApiToken, Member, Team
    from teams.tokens import issue_token

    team = Team.objects.get(domain=domain)
    with on_shard(team.shard):
        members = list(
            Member.objects.filter(team_id=team.id, name__startswith="member")
            .order_by("id")
            .values_list("id", flat=True)
        )
    tokens = [issue_token(team.id, m, ApiToken.Kind.USER) for m in members[:n_searchers]]
    return {"domain": domain, "shard": team.shard, "team_id": team.id, "authors": members, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--searchers", type=int, default=4)
    parser.add_argument("--queries", type=int, default=100, help="per searcher and case")
    parser.add_argument("--authors", type=int, default=50)
    parser.add_argument("--shard", default="shard_0")
    parser.add_argument("--index-workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the team for another --team run")
    parser.add_argument("--team", help="reuse a team kept by an earlier --keep run")
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="search every term once, untimed, first: p99 of a running server, whose buffers "
        "hold what is searched, rather than of the first searches after loading",
    )
    args = parser.parse_args()
    setup_embedded_django(Path(os.environ.get("CHAT_DATA_DIR", ROOT / "var")).resolve())

    rng = random.Random(42)
    avoid = {COMMON, *MEDIUM, *UNCOMMON}
    vocab = words(rng, 3000, 3, avoid)
    rare = words(rng, RARE_COUNT, 4, avoid)
    if args.team:
        world = reuse_world(args.team, args.searchers)
    else:
        print(f"load: {args.messages:,} messages")
        world = create_world(args.shard, args.authors, args.searchers)
        try:
            load(world, args.messages, vocab, rare)
            print("index:")
            index_all(world, args.index_workers)
        except BaseException:
            if not args.keep:
                delete_team(world)
            raise
    try:
        print("search:")
        run_searches(world, args.queries, rare, args.warmup)
    finally:
        if args.keep or args.team:
            print(f"  kept team {world['domain']} (rerun with --team {world['domain']})")
        else:
            delete_team(world)


if __name__ == "__main__":
    main()
