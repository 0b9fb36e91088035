from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdminMixin

from .models import CheckResult, QcDecision, QcRun


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
