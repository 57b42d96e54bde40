"""Entry points for tests that run work in separate processes (spawned, so each has its
own database connections). Nothing Django-related is imported at module level: a
spawned child imports this module before it has set Django up."""

from __future__ import annotations

from typing import Any


def setup_django(database_names: dict[str, str]) -> None:
    """Configure Django in a child to use the parent's test databases."""
    import chatproject.settings as project_settings

    for alias, name in database_names.items():
        project_settings.DATABASES[alias]["NAME"] = name
    import django

    django.setup()


def post_many(database_names: dict[str, str], token: str, channel: str, tag: str, count: int) -> list[int]:
    setup_django(database_names)
    from chatproject.dbrouter import on_shard
    from messaging.actions.posting import post_message
    from teams.auth import caller_from_token

    caller = caller_from_token(token)
    with on_shard(caller.shard):
        return [post_message(caller, channel, text=f"{tag}-{n}").message.ts for n in range(count)]


def run_in_processes(target: Any, argument_lists: list[tuple], timeout: float = 120) -> list[Any]:
    """Run target(*args) in one spawned process per args; return results in order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(argument_lists), mp_context=context) as pool:
        futures = [pool.submit(target, *args) for args in argument_lists]
        return [future.result(timeout=timeout) for future in futures]
