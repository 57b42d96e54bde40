"""daphne on uvloop: `python -m chatproject.daphne_uvloop` takes `python -m daphne`'s arguments.

daphne runs Twisted on an asyncio loop it creates when `daphne.server` is imported, so the
loop policy is set before that import. libuv's loop costs a gateway less per socket event
than asyncio's pure-Python one: on bench/fanout.py (1,000 sockets, 100 posts/s, 2 cores) the
daphnes' CPU went from ~85% to ~70-80% of a core and post-to-receive p50 from ~31 to ~24-28 ms.
"""

from __future__ import annotations

import asyncio

import uvloop


def main() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
