"""Admin search by the ids people paste: a Slack id (`U…`, `C…`, `B…`, `T…`), a row or event
number, or a message `ts`, matched exactly against the columns a page names, besides its
text search (search_fields)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from teams import ids

ID_PREFIXES = (ids.TEAM, ids.BOT, *ids.USER_PREFIXES, *ids.CHANNEL_PREFIXES)


def pasted_number(term: str) -> int | None:
    """The row id in a Slack id of any kind, or a plain number; None for anything else."""
    if term[:1] in ID_PREFIXES:
        try:
            return ids.decode(term, ID_PREFIXES)
        except ids.BadId:
            return None
    if term.isdigit() and 0 < int(term) <= ids.MAX_ID:
        return int(term)
    return None


def pasted_ts(term: str) -> int | None:
    """A message ts ("1700000000.123456"); a bare number is taken for an id instead."""
    if "." not in term:
        return None
    try:
        return ids.parse_ts(term)
    except ids.BadId:
        return None


def exact_matches(term: str, id_fields: tuple[str, ...], ts_fields: tuple[str, ...]) -> Q | None:
    term = term.strip()
    number, ts = pasted_number(term), pasted_ts(term)
    found = Q()
    for name in id_fields if number is not None else ():
        found |= Q(**{name: number})
    for name in ts_fields if ts is not None else ():
        found |= Q(**{name: ts})
    return found or None


class IdSearchAdmin(admin.ModelAdmin):
    # Integer columns a pasted Slack id or number matches; columns a pasted ts matches.
    id_search_fields: ClassVar[tuple[str, ...]] = ()
    ts_search_fields: ClassVar[tuple[str, ...]] = ()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> Any:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        exact = exact_matches(search_term, self.id_search_fields, self.ts_search_fields)
        if exact is None:
            return found, may_have_duplicates
        return found | queryset.filter(exact), may_have_duplicates
