"""Moving teams between shards from Django admin: the team list's "move" action (which plans
each move and queues its job) and the Team moves list, where a stopped move is resumed or
abandoned. The moving itself is teams.moves."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from teams.admin_shards import ActionAdmin
from teams.errors import ApiError
from teams.models import Team, TeamMove
from teams.moves import abandon_move, plan_move
from teams.tasks import move_team


class MoveTeamForm(forms.Form):
    target = forms.ChoiceField(label="Move to shard")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(a, a) for a in settings.SHARD_ALIASES]


@admin.action(description="Move selected teams to another shard", permissions=["run_actions"])
def move_teams(
    model_admin: ActionAdmin, request: HttpRequest, queryset: QuerySet[Team]
) -> HttpResponse | None:
    """Plan each move here (so bad input is refused at once), run it as an io job."""
    form = MoveTeamForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Move teams to another shard",
            "opts": model_admin.opts,
            "teams": list(queryset),
            "form": form,
        }
        return TemplateResponse(request, "admin/teams/team/move_teams.html", context)
    target = form.cleaned_data["target"]
    done: list[str] = []
    refused: list[tuple[str, str]] = []
    for team in list(queryset):
        try:
            plan_move(team, target)
            move_team.delay(team.id, target)
        except ApiError as exc:
            refused.append((team.domain, f"{exc.code}: {exc.detail}"))
        else:
            done.append(f"{team.domain} to {target}")
    model_admin.report(request, "Started moving (see Team moves)", done, refused)
    return None


@admin.register(TeamMove)
class TeamMoveAdmin(ActionAdmin):
    """Moves of teams between shards and the step each reached (read-only rows). A move is
    started from the team list (or `manage.py move_team`); one that stopped is resumed (its
    job queued again) or abandoned before its flip (abandon_move) from here."""

    actions = ("resume_moves", "abandon_moves")

    list_display = (
        "team",
        "source",
        "target",
        "step",
        "copied_rows",
        "freeze_ms",
        "started",
        "finished",
        "error",
    )
    list_select_related = ("team",)
    list_filter = ("step", "source", "target", ("finished", admin.EmptyFieldListFilter))
    search_fields = ("team__domain",)
    date_hierarchy = "started"

    def _unfinished(self, request: HttpRequest, queryset: QuerySet[TeamMove]) -> list[TeamMove]:
        moves = list(queryset.select_related("team"))
        for move in moves:
            if move.finished is not None:
                self.message_user(request, f"Refused for {move.team.domain}: move_finished", messages.ERROR)
        return [move for move in moves if move.finished is None]

    @admin.action(description="Resume selected moves (queue their job again)", permissions=["run_actions"])
    def resume_moves(self, request: HttpRequest, queryset: QuerySet[TeamMove]) -> None:
        resumed = []
        for move in self._unfinished(request, queryset):
            move_team.delay(move.team_id, move.target)
            resumed.append(f"{move.team.domain} at {move.step}")
        self.report(request, "Resuming", resumed, [])

    @admin.action(
        description="Abandon selected moves (before their flip: the team stays where it is)",
        permissions=["run_actions"],
    )
    def abandon_moves(self, request: HttpRequest, queryset: QuerySet[TeamMove]) -> None:
        done: list[str] = []
        refused: list[tuple[str, str]] = []
        for move in self._unfinished(request, queryset):
            try:
                abandon_move(move.team)
            except ApiError as exc:
                refused.append((move.team.domain, f"{exc.code}: {exc.detail}"))
            else:
                done.append(move.team.domain)
        self.report(request, "Abandoned", done, refused)
