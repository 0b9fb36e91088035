from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdminMixin

from .models import DeidProfile, DeidRecord


class ReadOnlyAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    pass


@admin.register(DeidProfile)
class DeidProfileAdmin(ReadOnlyAdmin):
    list_display = ["trial", "version", "options", "purge_raw_after_days", "created_by", "created_at"]
    list_filter = ["trial"]


@admin.register(DeidRecord)
class DeidRecordAdmin(ReadOnlyAdmin):
    list_display = ["instance", "profile", "outcome", "verification_passed", "duration_ms", "created_at",
                    "raw_purged_at"]
    list_filter = ["outcome", "verification_passed"]
