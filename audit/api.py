"""Audit search and patient timelines over the API: the same selectors and scoping as the pages.

Pages are keyset-paginated: ``next`` is an opaque cursor to pass back as ``after``.
"""

import datetime as dt

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors
from .forms import SearchForm, TimelineFilterForm


class EventOutput(serializers.Serializer):
    id = serializers.IntegerField(source="event.id")
    seq = serializers.IntegerField(source="event.seq", allow_null=True)
    occurred_at = serializers.DateTimeField(source="utc")
    occurred_at_local = serializers.SerializerMethodField()
    actor = serializers.CharField(source="event.actor_label")
    actor_role = serializers.CharField(source="event.actor_role")
    action = serializers.CharField(source="event.action")
    action_words = serializers.CharField(source="words")
    target_type = serializers.CharField(source="event.target_type")
    target_id = serializers.CharField(source="event.target_id")
    target_label = serializers.CharField(source="event.target_label")
    target_url = serializers.CharField(source="url")
    history_url = serializers.CharField()
    trial_id = serializers.IntegerField(source="event.trial_id", allow_null=True)
    site_id = serializers.IntegerField(source="event.site_id", allow_null=True)
    subject_id = serializers.IntegerField(source="event.subject_id", allow_null=True)
    subject_code = serializers.CharField(source="event.subject_code")
    details = serializers.JSONField(source="event.details")
    reason = serializers.CharField(source="event.reason")
    hash = serializers.CharField(source="event.hash")

    def get_occurred_at_local(self, entry) -> str:
        return entry.local.isoformat(timespec="seconds")


PAGE = inline_serializer("AuditEventPage", {"next": serializers.CharField(),
                                            "results": EventOutput(many=True)})
SEARCH_PARAMS = [OpenApiParameter(name, str, required=False) for name in
                 ["trial", "site", "subject", "subject_id", "user", "action", "target_type", "target_id", "since",
                  "until", "after"]]


class AuditSearchApi(APIView):
    """Audit events of the trials where the caller may read the audit trail (auditors, trial managers)."""

    @extend_schema(parameters=SEARCH_PARAMS, responses=PAGE)
    def get(self, request):
        trials = selectors.audit_trial_choices_for_user(user=request.user)
        if not trials:
            return Response({"detail": "Not found."}, status=404)
        form = SearchForm(request.query_params, trials=trials)
        if not form.is_valid():
            return Response(form.errors, status=400)
        events = selectors.audit_event_list_for_user(user=request.user, filters=form.filters())
        limit = request.query_params.get("limit", "")
        size = min(int(limit), 500) if limit.isdigit() and int(limit) > 0 else 50
        rows, cursor = selectors.keyset_page(events, after=request.query_params.get("after", ""), limit=size,
                                             newest_first=True)
        entries = selectors.timeline_entries(rows, tz=dt.UTC)
        return Response({"next": cursor, "results": EventOutput(entries, many=True).data})


class SubjectTimelineApi(APIView):
    """One subject's timeline, oldest first (``order=desc`` for newest first), with site-local times."""

    @extend_schema(parameters=[OpenApiParameter("family", str, required=False),
                               OpenApiParameter("order", str, required=False),
                               OpenApiParameter("after", str, required=False)], responses=PAGE)
    def get(self, request, subject_id: int):
        subject = selectors.subject_get_for_auditor(user=request.user, subject_id=subject_id)
        form = TimelineFilterForm(request.query_params)
        if not form.is_valid():
            return Response(form.errors, status=400)
        newest_first = form.cleaned_data["order"] == "desc"
        events = selectors.timeline_events(subject=subject, family=form.cleaned_data["family"],
                                           newest_first=newest_first)
        rows, cursor = selectors.keyset_page(events, after=request.query_params.get("after", ""),
                                             newest_first=newest_first)
        entries = selectors.timeline_entries(rows, tz=subject.tz)
        return Response({"next": cursor, "results": EventOutput(entries, many=True).data})
