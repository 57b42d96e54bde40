"""What `./run` and `./test` do once .venv exists.

`serve` (the default): start the embedded PostgreSQL and Redis unless CHAT_* points at
real servers, migrate the control DB and every shard, seed a demo team the first time,
then run daphne, a Celery worker and Celery beat until Ctrl-C.
`test [pytest args]`: the same setup, then the whole test suite.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from chatproject import embedded
from chatproject.chromium import ensure_chromium

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECS = 15  # Celery's warm shutdown finishes the task at hand


def worker_pools(unfurl_threads: int) -> dict[str, tuple[str, str, int]]:
    """name -> (queues, Celery pool, concurrency) of each worker `./run` starts.

    Previews mostly wait on the network, so their worker is one process of many threads:
    a fetch stuck on a hanging host costs a thread, and there are enough threads that the
    hosts hanging at once (each capped by its bulkhead) leave most of them to healthy
    hosts. Search indexing and transfers work the CPU and the database: processes."""
    return {
        "unfurl": ("unfurl", "threads", unfurl_threads),
        "search": ("search,default", "prefork", 2),
        "io": ("io", "prefork", 1),
    }


def _settings() -> ModuleType:
    import chatproject.settings as settings

    return importlib.reload(settings)


def prepare_services() -> tuple[ModuleType, list[str]]:
    """Start what is missing, create the databases, and return fresh settings."""
    settings = _settings()
    started: list[str] = []
    if settings.USING_EMBEDDED:
        _, started = embedded.ensure_running(settings.DATA_DIR)
        settings = _settings()
    embedded.ensure_databases([settings.CONTROL_DB_URL, *settings.SHARD_URLS])
    return settings, started


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def _listening_socket(port: int, backlog: int) -> socket.socket:
    """One listening socket shared by every daphne process; the kernel spreads accepts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(backlog)
    listener.set_inheritable(True)
    return listener


def fresh_metrics_dir(directory: Path) -> None:
    """Metrics count from this start: drop the files of an earlier run's processes."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def serve(settings: ModuleType) -> int:
    manage("migrate_all")
    manage("seed_demo")
    fresh_metrics_dir(settings.METRICS_DIR)
    python = sys.executable
    listener = _listening_socket(settings.PORT, settings.LISTEN_BACKLOG)
    fd = listener.fileno()
    access_log = str(settings.DATA_DIR / "access.log")
    handshake = str(settings.WEBSOCKET_HANDSHAKE_SECS)
    daphne = [python, "-m", "chatproject.daphne_uvloop", "--fd", str(fd), "--access-log", access_log]
    daphne += ["--websocket_connect_timeout", handshake]
    celery = [python, "-m", "celery", "-A", "chatproject"]
    commands = {
        **{f"daphne-{n}": [*daphne, "chatproject.asgi:application"] for n in range(settings.WEB_PROCESSES)},
        # One worker per kind of job, so a flood of one kind cannot starve another.
        **{
            f"worker-{name}": [
                *celery,
                "worker",
                "-Q",
                queues,
                "-n",
                f"{name}@%h",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
            ]
            for name, (queues, pool, concurrency) in worker_pools(settings.UNFURL_WORKER_THREADS).items()
        },
        "beat": [*celery, "beat", "--loglevel", "INFO", "-s", str(settings.DATA_DIR / "celerybeat-schedule")],
    }
    worker_env = {**os.environ, "CHAT_DB_POOL": "0"}  # see DB_POOL in settings
    children = {
        name: subprocess.Popen(
            cmd,
            cwd=ROOT,
            pass_fds=(fd,) if name.startswith("daphne") else (),
            env=None if name.startswith("daphne") else worker_env,
        )
        for name, cmd in commands.items()
    }
    listener.close()  # the daphne processes hold it now
    print(f"Serving on http://127.0.0.1:{settings.PORT}/  (Ctrl-C stops everything)", flush=True)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the rest", file=sys.stderr)
                exit_code, stopping = 1, True
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECS
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return exit_code


def run_tests(settings: ModuleType, pytest_args: list[str]) -> int:
    manage("migrate_all")  # keeps the dev databases current; tests build their own copies
    ensure_chromium()  # the browser tests drive Debian's chromium
    # Tests' metrics apart from a server that may be running on the same data.
    metrics_dir = settings.DATA_DIR / "metrics-test"
    fresh_metrics_dir(metrics_dir)
    env = {**os.environ, "CHAT_METRICS_DIR": str(metrics_dir)}
    return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    mode, rest = (argv[0], argv[1:]) if argv and argv[0] in ("serve", "test") else ("serve", argv)
    settings, started = prepare_services()
    try:
        return run_tests(settings, rest) if mode == "test" else serve(settings)
    finally:
        embedded.stop(settings.DATA_DIR, started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
