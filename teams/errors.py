"""The one error type actions raise: a Slack error code the Web API returns as-is."""

from __future__ import annotations


class ApiError(Exception):
    """`{"ok": false, "error": code}` on the Web API; `detail` is for logs and the CLI."""

    def __init__(
        self, code: str, detail: str = "", *, status: int = 200, retry_after: int | None = None
    ) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


MOVING_RETRY_AFTER_SECS = 1  # a move's write freeze lasts about a second (teams.moves)


def team_is_moving(detail: str = "the team is moving to another shard; retry shortly") -> ApiError:
    """The retryable answer to a write (or any call) while a team's shard move is frozen."""
    return ApiError("team_is_moving", detail, status=503, retry_after=MOVING_RETRY_AFTER_SECS)
