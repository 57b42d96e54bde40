"""How fast this machine is at what the realtime benches spend their time on, so that
figures from different days (or machines) can be compared: a pure-Python loop, and a
small loopback TCP send, alone and waking a reader that sleeps in epoll (what each
socket of a fan-out costs the kernel).

    .venv/bin/python bench/machine.py

Run it on a quiet machine, before and after a benchmark whose figures moved for no
reason in the code.
"""

from __future__ import annotations

import multiprocessing
import select
import socket
import statistics
import time
from multiprocessing.connection import Connection

SENDS = 20_000
FRAME = b"\x81\x7e\x00\xc8" + b"x" * 200  # a websocket text frame of 200 bytes


def python_loop_secs(n: int = 10_000_000) -> float:
    started = time.process_time()
    total = 0
    for i in range(n):
        total += i
    return time.process_time() - started


def _reader(port: int, ready: Connection, sleepy: bool) -> None:
    """Drain the socket; `sleepy`: wait in epoll between reads (woken by every send)."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setblocking(False)
        poller = select.epoll()
        poller.register(conn.fileno(), select.EPOLLIN)
        ready.send(True)
        while True:
            if sleepy:
                poller.poll()
            try:
                if not conn.recv(1 << 20):
                    return
            except BlockingIOError:
                continue


def send_micros(sleepy: bool) -> float:
    """Median µs per send() of FRAME to a loopback reader (in batches of 1,000)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        parent, child = multiprocessing.Pipe()
        reader = multiprocessing.Process(target=_reader, args=(server.getsockname()[1], child, sleepy))
        reader.start()
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parent.recv()
        per_batch = []
        for _ in range(SENDS // 1000):
            started = time.perf_counter()
            for _ in range(1000):
                conn.send(FRAME)
            per_batch.append((time.perf_counter() - started) / 1000 * 1e6)
        conn.close()
        reader.join(timeout=5)
    return statistics.median(per_batch)


def main() -> None:
    loops = sorted(python_loop_secs() for _ in range(3))
    print(f"python loop, 10M additions: {loops[1]:.2f} s CPU (median of 3)")
    print(f"loopback send of {len(FRAME)} B, reader busy:     {send_micros(False):.1f} us")
    print(f"loopback send of {len(FRAME)} B, reader in epoll: {send_micros(True):.1f} us")


if __name__ == "__main__":
    main()
