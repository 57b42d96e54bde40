"""Signing in to the web client: email and password, then choosing a team, each open at its
own address (/client/T…/, as Slack's), so that two tabs can hold two teams."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from teams import ids, sign_in_limits
from teams.auth import SESSION_TEAM_KEY
from teams.directory import team_entry
from teams.invites import may_administer
from teams.models import TeamMembership
from teams.sessions import end_session_sockets


def _open_memberships(request: HttpRequest) -> list[TeamMembership]:
    return list(
        TeamMembership.objects.filter(account_id=request.user.pk, team__status="active")
        .select_related("team")
        .order_by("team__name")
    )


class ThrottledSignInForm(AuthenticationForm):
    """Refused without checking the password once too many guesses failed (sign_in_limits)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong email or password. Please try again.",
    }

    def clean(self) -> dict[str, Any]:
        email, address = self.cleaned_data.get("username") or "", sign_in_limits.client_address(self.request)
        wait = sign_in_limits.wait_secs(email, address)
        if wait:
            raise ValidationError(sign_in_limits.wait_message(wait), code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if exc.code == "invalid_login":
                sign_in_limits.failed(email, address)
            raise
        sign_in_limits.succeeded(email, address)
        return cleaned


class SignInView(auth_views.LoginView):
    template_name = "teams/sign_in.html"
    redirect_authenticated_user = True
    form_class = ThrottledSignInForm

    def get_success_url(self) -> str:
        memberships = _open_memberships(self.request)
        if len(memberships) == 1:
            self.request.session[SESSION_TEAM_KEY] = memberships[0].team_id
            return client_url(memberships[0].team_id)
        return reverse("choose_team")


class SignOutView(auth_views.LogoutView):
    next_page = "sign_in"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Before the session goes: its other tabs' sockets are ended with it.
        if request.user.is_authenticated and request.session.session_key:
            end_session_sockets(request.user.pk, request.session.session_key)
        return super().post(request, *args, **kwargs)


@login_required(login_url="sign_in")
@require_http_methods(["GET", "POST"])
def choose_team(request: HttpRequest) -> HttpResponse:
    memberships = _open_memberships(request)
    if request.method == "POST":
        chosen = request.POST.get("team_id", "")
        match = next((m for m in memberships if str(m.team_id) == chosen), None)
        if match is not None:
            request.session[SESSION_TEAM_KEY] = match.team_id
            return redirect(client_url(match.team_id))
    return render(request, "teams/choose_team.html", {"memberships": memberships})


def client_url(team_id: int) -> str:
    return reverse("client", args=[ids.encode(ids.TEAM, team_id)])


@login_required(login_url="sign_in")
def home(request: HttpRequest) -> HttpResponse:
    """The team last opened, else the choice of teams."""
    team_id = request.session.get(SESSION_TEAM_KEY)
    if any(m.team_id == team_id for m in _open_memberships(request)):
        return HttpResponseRedirect(client_url(team_id))
    return HttpResponseRedirect(reverse("choose_team"))


@login_required(login_url="sign_in")
def client(request: HttpRequest, team: str) -> HttpResponse:
    """The web client for one team. Its calls name that team (teams.auth.TEAM_HEADER), so
    opening another team in another tab leaves this one where it is; the team opened last
    is where "/" goes."""
    try:
        team_id = ids.decode(team, ids.TEAM)
    except ids.BadId:
        raise Http404("No such team") from None
    membership = next((m for m in _open_memberships(request) if m.team_id == team_id), None)
    if membership is None:
        return HttpResponseRedirect(reverse("choose_team"))
    if request.session.get(SESSION_TEAM_KEY) != team_id:  # setting it saves the session
        request.session[SESSION_TEAM_KEY] = team_id
    entry = team_entry(membership.team_id)
    context: dict[str, Any] = {
        "team": membership.team,
        "member_id": membership.member_id,
        "is_admin": may_administer(entry, membership.member_id),
    }
    return render(request, "client/app.html", context)
