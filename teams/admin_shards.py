"""The shared base of Django admin pages: writes through the actions layer, and for team-scoped
models a team chosen first, whose shard every query of the page runs on.

A team-scoped page (`TeamScopedAdmin`) reads the team from `?team_id=` (or from the
`_changelist_filters` Django keeps on change links, or the last team chosen in this admin
session), and runs the whole view, template rendering included, inside `on_shard()` with
its queryset filtered by that team. Without a team the list shows a team chooser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import IS_POPUP_VAR, ORDER_VAR, TO_FIELD_VAR
from django.contrib.auth import get_permission_codename
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import reverse

from chatproject.dbrouter import NoShardSelected, is_shard_model, on_shard
from teams import ids
from teams.admin_search import IdSearchAdmin
from teams.auth import Caller
from teams.directory import TeamEntry, team_entry
from teams.errors import ApiError
from teams.models import Member, Team

TEAM_PARAM = "team_id"
SESSION_TEAM_KEY = "admin_team_id"  # the last team chosen, for pages opened without one
PRESERVED_FILTERS_PARAM = "_changelist_filters"  # where Django keeps the list's query on change links
# A form's save_model stores the token texts an action minted here, for response_add to show once.
ISSUED_TOKENS_ATTR = "_admin_issued_tokens"

_chosen_team: ContextVar[TeamEntry | None] = ContextVar("admin_chosen_team", default=None)


def chosen_team() -> TeamEntry:
    """The team the current admin page is about (set around each team-scoped view)."""
    team = _chosen_team.get()
    if team is None:
        raise NoShardSelected("team-scoped admin code ran outside a page with a chosen team")
    return team


def team_label(team: TeamEntry) -> str:
    status = "" if team.is_open else f", {team.status}"
    return f"Team {team.domain} ({team.slack_id}) on {team.shard}{status}"


def require_writable(team: TeamEntry) -> None:
    """A moving team is frozen for writes while its rows are copied (DESIGN: team moves)."""
    if team.status == Team.Status.MOVING:
        raise ApiError("team_is_moving", f"{team.domain} is moving to another shard; try again shortly")


def admin_caller(team: TeamEntry) -> Caller:
    """The Caller an admin-initiated action runs as: the team's owner, in a session.

    Actions apply Slack's permission rules to their caller; the owner is an admin of the team,
    so an admin page can do what the team's own admins can and no more, and the events it
    appends name the owner as the actor (the control DB's admin log records which staff
    account did it). Raises ApiError when the team has no active owner.
    """
    require_writable(team)
    with on_shard(team.shard):
        owner_id = (
            Member.objects.filter(team_id=team.id, is_owner=True, deleted=False)
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
    if owner_id is None:
        raise ApiError("owner_not_found", f"{team.domain} has no active owner to act as")
    return Caller(team, owner_id, None, "session", None)


def adopt(target: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved form instance the row an action created, so the admin log
    and the redirect after "add" name the real row."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


def issued_tokens_response(
    request: HttpRequest, model_admin: admin.ModelAdmin, heading: str, tokens: list[tuple[str, str]]
) -> TemplateResponse:
    """A page showing freshly minted token texts, the only time they exist in clear.

    Rendered directly rather than as a flash message: messages travel in a cookie.
    """
    opts = model_admin.opts
    back = reverse(f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
    team = _chosen_team.get()
    if team is not None:
        back += f"?{TEAM_PARAM}={team.id}"
    context = {
        **model_admin.admin_site.each_context(request),
        "title": heading,
        "subtitle": team_label(team) if team else None,
        "opts": opts,
        "tokens": tokens,
        "back_url": back,
    }
    return TemplateResponse(request, "admin/team_scoped/issued_tokens.html", context)


class ActionAdmin(IdSearchAdmin):
    """A ModelAdmin whose writes are the actions layer's: it only allows the writes a subclass
    routes through an action (in save_model / delete_model / delete_queryset), and shows an
    action's refusal (ApiError) as an error message instead of a server error."""

    # Which of Django's writes ("add", "change", "delete") this admin performs through an
    # action; the others are refused, so its pages are read-only for them.
    action_writes: ClassVar[frozenset[str]] = frozenset()
    # The form and fields of the "add" page, when adding goes through an action that takes
    # other inputs than the model's columns (as Django's UserAdmin does).
    add_form: ClassVar[type[forms.ModelForm] | None] = None
    add_fields: ClassVar[tuple[str, ...]] = ()

    def may_write(self, request: HttpRequest, action: str) -> bool:
        """Django's model permission for `action`, if this admin performs it at all."""
        if action not in self.action_writes:
            return False
        codename = get_permission_codename(action, self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.may_write(request, "add")

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self.may_write(request, "change")

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self.may_write(request, "delete")

    def has_run_actions_permission(self, request: HttpRequest) -> bool:
        """Bulk actions (`permissions=["run_actions"]`) need the model's change permission,
        even where the change form itself is read-only."""
        codename = get_permission_codename("change", self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))

    def get_form(
        self, request: HttpRequest, obj: models.Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None and self.add_form is not None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        if obj is None and self.add_fields:
            return self.add_fields
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return () if obj is None else super().get_readonly_fields(request, obj)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return self.refusals_as_messages(
            request,
            lambda: super(ActionAdmin, self).changeform_view(request, object_id, form_url, extra_context),
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.refusals_as_messages(
            request, lambda: super(ActionAdmin, self).delete_view(request, object_id, extra_context)
        )

    def refusals_as_messages(self, request: HttpRequest, view: Callable[[], HttpResponse]) -> HttpResponse:
        # The action rolled its transaction back and the admin's atomic block with it; the
        # form is shown again (empty: it was a POST) with the reason.
        try:
            return view()
        except ApiError as exc:
            self.message_user(request, f"Refused: {exc.code}. {exc.detail}".strip(), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_add(
        self, request: HttpRequest, obj: models.Model, post_url_continue: str | None = None
    ) -> HttpResponse:
        tokens = getattr(obj, ISSUED_TOKENS_ATTR, None)
        if tokens:
            return issued_tokens_response(request, self, f"Added {obj}: copy the new tokens now", tokens)
        return super().response_add(request, obj, post_url_continue)

    def report(
        self, request: HttpRequest, verb: str, done: list[str], refused: list[tuple[str, str]]
    ) -> None:
        """One message for a bulk action: what was done, and what an action refused and why."""
        if done:
            self.message_user(request, f"{verb}: {', '.join(done)}", messages.SUCCESS)
        for label, code in refused:
            self.message_user(request, f"Refused for {label}: {code}", messages.ERROR)


class TeamListFilter(admin.SimpleListFilter):
    """The team switcher in a team-scoped list's sidebar. Picking a team picks the shard the
    page runs on, so the filtering itself is done by the admin's get_queryset."""

    title = "team"
    parameter_name = TEAM_PARAM
    # Query parameters that describe the page, not the team's rows; they survive a switch.
    _KEPT_ON_SWITCH = (TEAM_PARAM, ORDER_VAR, IS_POPUP_VAR, TO_FIELD_VAR)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (str(team_id), f"{domain} ({shard})")
            for team_id, domain, shard in Team.objects.order_by("domain").values_list("id", "domain", "shard")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset

    def get_facet_counts(self, pk_attname: str, filtered_qs: QuerySet) -> dict[str, Any]:
        return {}  # every other team lives elsewhere (maybe another shard): nothing to count here

    def choices(self, changelist: Any) -> Iterable[dict[str, Any]]:
        # Other filters name the current team's rows (a channel id, a search): drop them.
        stale = [key for key in changelist.params if key not in self._KEPT_ON_SWITCH]
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({TEAM_PARAM: value}, remove=stale),
                "display": label,
            }


def _team_from(value: object) -> TeamEntry | None:
    text = str(value or "").strip()
    try:
        team_id = ids.decode(text, ids.TEAM) if text[:1] == ids.TEAM else int(text)
        return team_entry(team_id)
    except (ValueError, ApiError):
        return None


class TeamScopedAdmin(ActionAdmin):
    """Admin of a model that lives on team shards (`lives_on_shard`): a team is chosen first,
    then every view of the model reads and writes only that team's rows on its shard."""

    def _requested_team(self, request: HttpRequest) -> tuple[TeamEntry | None, bool]:
        """The team this request is about, and whether the request named it itself."""
        if TEAM_PARAM in request.GET:
            return _team_from(request.GET[TEAM_PARAM]), True
        preserved = QueryDict(request.GET.get(PRESERVED_FILTERS_PARAM, ""))
        if TEAM_PARAM in preserved:
            return _team_from(preserved[TEAM_PARAM]), True
        return _team_from(request.session.get(SESSION_TEAM_KEY)), False

    def _changelist_url(self) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def _on_team(
        self, request: HttpRequest, view: Callable[..., HttpResponse], **kwargs: Any
    ) -> HttpResponse:
        """Run a view for the chosen team; other pages than the list send the user to choose one."""
        team, _named = self._requested_team(request)
        if team is None:
            self.message_user(request, "Choose a team first.", messages.WARNING)
            return HttpResponseRedirect(self._changelist_url())
        return self._run_on(request, team, view, **kwargs)

    def _run_on(
        self, request: HttpRequest, team: TeamEntry, view: Callable[..., HttpResponse], **kwargs: Any
    ) -> HttpResponse:
        if request.session.get(SESSION_TEAM_KEY) != team.id:
            request.session[SESSION_TEAM_KEY] = team.id
        context = {"subtitle": team_label(team), **(kwargs.pop("extra_context", None) or {})}
        token = _chosen_team.set(team)
        try:
            with on_shard(team.shard):
                response = view(request, extra_context=context, **kwargs)
                # Admin pages are TemplateResponses rendered after the view returns, and
                # rendering runs queries (result lists, related rows): render on the shard.
                if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                    response.render()
                return response
        finally:
            _chosen_team.reset(token)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        team, named = self._requested_team(request)
        if named and team is None:
            self.message_user(request, "No such team.", messages.ERROR)
        if team is None:
            return self._choose_team(request)
        if not named and request.method == "GET":
            # Put the session's team into the URL, so the list's links and forms carry it.
            query = request.GET.copy()
            query[TEAM_PARAM] = str(team.id)
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return self._run_on(request, team, super().changelist_view, extra_context=extra_context)

    def _choose_team(self, request: HttpRequest) -> TemplateResponse:
        query = request.GET.copy()
        query.pop(TEAM_PARAM, None)
        choices = []
        for team in Team.objects.order_by("domain"):
            query[TEAM_PARAM] = str(team.id)
            choices.append({"team": team, "url": f"?{query.urlencode()}"})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Choose a team to see its {self.opts.verbose_name_plural}",
            "opts": self.opts,
            "choices": choices,
            "is_popup": IS_POPUP_VAR in request.GET,
        }
        return TemplateResponse(request, "admin/team_scoped/choose_team.html", context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return self._on_team(
            request,
            lambda request, extra_context: super(TeamScopedAdmin, self).changeform_view(
                request, object_id, form_url, extra_context
            ),
            extra_context=extra_context,
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: models.Model | None = None,
    ) -> HttpResponse:
        # changeform_view puts the object's name in the subtitle; keep the team next to it.
        label = team_label(chosen_team())
        context["subtitle"] = f"{obj} · {label}" if obj is not None else label
        return super().render_change_form(request, context, add, change, form_url, obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self._on_team(
            request,
            lambda request, extra_context: super(TeamScopedAdmin, self).delete_view(
                request, object_id, extra_context
            ),
            extra_context=extra_context,
        )

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self._on_team(
            request,
            lambda request, extra_context: super(TeamScopedAdmin, self).history_view(
                request, object_id, extra_context
            ),
            extra_context=extra_context,
        )

    def get_list_filter(self, request: HttpRequest) -> Any:
        return [TeamListFilter, *super().get_list_filter(request)]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Team isolation: other teams' rows on the same shard never reach an admin page.
        team = chosen_team()
        return super().get_queryset(request).using(team.shard).filter(team_id=team.id)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if is_shard_model(related):
            team = chosen_team()
            kwargs["queryset"] = related._default_manager.using(team.shard).filter(team_id=team.id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def may_write(self, request: HttpRequest, action: str) -> bool:
        team = _chosen_team.get()
        if team is not None and team.status == Team.Status.MOVING:
            return False
        return super().may_write(request, action)

    def has_run_actions_permission(self, request: HttpRequest) -> bool:
        team = _chosen_team.get()
        if team is not None and team.status == Team.Status.MOVING:
            return False
        return super().has_run_actions_permission(request)
