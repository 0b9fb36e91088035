from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdminMixin

from .models import CheckResult, QcDecision, QcRun, Query, QueryAttachment, QueryMessage


class ReadOnlyAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    pass


@admin.register(QcRun)
class QcRunAdmin(ReadOnlyAdmin):
    list_display = ["study", "charter_version", "trigger", "instance_count", "passed", "failed", "warned",
                    "finished_at"]
    list_filter = ["trigger", "charter_version"]


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = ["run", "rule", "series", "expected", "measured", "outcome", "charter_version"]
    list_filter = ["outcome", "rule"]


@admin.register(QcDecision)
class QcDecisionAdmin(ReadOnlyAdmin):
    list_display = ["study", "decision", "analyst", "decided_at"]
    list_filter = ["decision"]


@admin.register(Query)
class QueryAdmin(ReadOnlyAdmin):
    list_display = ["pk", "trial", "site", "category", "status", "due_date", "overdue", "raised_at"]
    list_filter = ["status", "category", "overdue"]


@admin.register(QueryMessage)
class QueryMessageAdmin(ReadOnlyAdmin):
    list_display = ["query", "side", "kind", "author", "created_at"]


@admin.register(QueryAttachment)
class QueryAttachmentAdmin(ReadOnlyAdmin):
    list_display = ["query", "name", "size", "sha256", "uploaded_by", "uploaded_at"]
