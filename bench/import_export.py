"""Import and export of a whole team at scale: time and peak memory (RSS) of each.

    CHAT_DATA_DIR=/tmp/benchvar .venv/bin/python bench/import_export.py \\
        --messages 1000000 --channels 500 --members 5000

It starts the embedded PostgreSQL/Redis of CHAT_DATA_DIR unless they run, migrates,
writes a synthetic export with bench/slack_export_gen.py (or takes --archive), then runs
`manage.py import_slack` and `manage.py export_team` as child processes (the code the
jobs run), sampling each one's RSS. Targets (issue 5): import <= 10 min with RSS under
500 MB, export <= 5 min, memory independent of the archive's size. The team is deleted
afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

from bench.cluster import setup_embedded_django  # noqa: E402
from bench.slack_export_gen import generate  # noqa: E402


def measured(command: list[str]) -> tuple[float, float, str]:
    """Run a command; (seconds, peak RSS in MB of it and its children, stdout)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss + sum(
                c.memory_info().rss for c in watched.children(recursive=True)
            )
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = process.stdout.read() if process.stdout else ""
    if process.returncode:
        raise SystemExit(f"{' '.join(command[1:3])} failed with exit code {process.returncode}")
    return time.monotonic() - started, peak / 1e6, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--archive", type=Path, help="an existing export to import instead")
    parser.add_argument("--shard", default="shard_0")
    parser.add_argument("--keep", action="store_true", help="keep the imported team")
    args = parser.parse_args()
    setup_embedded_django(Path(os.environ.get("CHAT_DATA_DIR", ROOT / "var")))
    workdir = Path(tempfile.mkdtemp(prefix="bench-import-"))
    archive = args.archive
    if archive is None:
        archive = workdir / "export.zip"
        started = time.monotonic()
        generate(archive, args.messages, args.channels, args.members)
        print(f"generated {archive.stat().st_size / 1e6:.1f} MB export in {time.monotonic() - started:.1f} s")
    domain = f"bench-import-{secrets.token_hex(3)}"
    manage = [sys.executable, str(ROOT / "manage.py")]
    import_secs, import_rss, out = measured(
        [*manage, "import_slack", str(archive), "--team", domain, "--shard", args.shard, "--json"]
    )
    result = json.loads(out)
    exported = workdir / "exported.zip"
    export_secs, export_rss, _ = measured([*manage, "export_team", "--team", domain, str(exported)])
    counts = result["counts"]
    print(json.dumps({"counts": counts, "skipped": len(result["skipped"])}))
    rate = counts["messages"] / import_secs, counts["messages"] / export_secs
    print(f"import: {import_secs:7.1f} s  {rate[0]:8.0f} msg/s  peak RSS {import_rss:6.0f} MB")
    print(f"export: {export_secs:7.1f} s  {rate[1]:8.0f} msg/s  peak RSS {export_rss:6.0f} MB")
    print(f"archives: in {archive.stat().st_size / 1e6:.1f} MB, out {exported.stat().st_size / 1e6:.1f} MB")
    if not args.keep:
        from jobs.slack_export.import_actions import discard_team
        from teams.directory import team_by_domain

        team = team_by_domain(domain)
        discard_team(team.id, team.shard)
    exported.unlink()


if __name__ == "__main__":
    main()
