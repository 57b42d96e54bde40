"""The owner/admin pages of the web client (invite, import, export) and the invitation
sign-up page. Thin: the work is in teams.invites and the admin.* Web API methods."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from teams import ids
from teams.auth import SESSION_TEAM_KEY
from teams.directory import TeamEntry, team_entry
from teams.errors import ApiError
from teams.invites import accept_invite, issue_invite, may_administer, read_invite
from teams.models import TeamMembership


def _admin_of(request: HttpRequest) -> tuple[TeamEntry, int] | None:
    """The team the page is for (?team=T…, from the client of that team; else the session's
    last) and the caller's member id there, when they may administer it."""
    try:
        team_id = ids.decode(request.GET["team"], ids.TEAM) if "team" in request.GET else None
    except ids.BadId:
        return None
    if team_id is None:
        team_id = request.session.get(SESSION_TEAM_KEY)
    membership = TeamMembership.objects.filter(account_id=request.user.pk, team_id=team_id).first()
    if membership is None:
        return None
    team = team_entry(membership.team_id)
    if not team.is_open or not may_administer(team, membership.member_id):
        return None
    return team, membership.member_id


@login_required(login_url="sign_in")
@require_http_methods(["GET", "POST"])
def team_admin(request: HttpRequest) -> HttpResponse:
    found = _admin_of(request)
    if found is None:
        return HttpResponseForbidden("Only the team's owners and admins can open this page.")
    team, _ = found
    context: dict[str, object] = {"team": team}
    if request.method == "POST":
        try:
            issued = issue_invite(
                team,
                request.POST.get("email", ""),
                lambda token: request.build_absolute_uri(reverse("accept_invite", args=[token])),
            )
        except ApiError as exc:
            context["invite_error"] = exc.detail or exc.code
        else:
            context.update(invite_email=issued.email, invite_link=issued.link_for_admin, invite_sent=True)
    return render(request, "client/team_admin.html", context)


@require_http_methods(["GET", "POST"])
def accept_invite_view(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = read_invite(token)
    except ApiError as exc:
        return render(request, "teams/invite.html", {"fatal": exc.detail or exc.code}, status=400)
    context: dict[str, object] = {"invite": invite}
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:80]
        try:
            account = accept_invite(request, invite, name, request.POST.get("password", ""))
        except ApiError as exc:
            context.update(error=exc.detail or exc.code, name=name)
        else:
            login(request, account, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_TEAM_KEY] = invite.team.id
            return redirect("home")
    return render(request, "teams/invite.html", context)
