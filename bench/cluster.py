"""The realtime benchmarks' servers (fanout.py, boot.py, reconnect.py, ...): a data dir's
services and the daphne processes serving them.

- Services: the embedded PostgreSQL and Redis under a data dir of the bench's own
  (started unless already running, migrated, and stopped again if this run started them).
- daphne processes against that data dir, with per-token rate limits off
  (CHAT_RATE_LIMITS=0) and the boot/socket admission rates the bench chooses.

CPU sampling of the cluster goes through bench/probes.py's ServerProbe.

Every bench here only talks to 127.0.0.1 and stops whatever it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.probes import ServerProbe

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "chat-bench-rtm"
ADMISSION_FLAGS = {
    "boot-rate-per-team": "CHAT_BOOT_RATE_PER_TEAM",
    "boot-rate-total": "CHAT_BOOT_RATE_TOTAL",
    "socket-accept-rate": "CHAT_SOCKET_ACCEPT_RATE",
}
OPEN_ADMISSION = 100_000.0  # per second: admission never limits the bench
DAPHNE_START_SECS = 60.0
MIGRATE_TIMEOUT_SECS = 600.0


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


def on_sigterm_exit() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


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
                    # Access lines to a file, as ./run has them: without one daphne writes
                    # them to stdout through Twisted's logging, which ./run does not pay.
                    "--access-log",
                    str(logs / f"access-{port}.log"),
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
