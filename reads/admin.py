from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdminMixin

from .models import (
    Adjudication,
    BicrResult,
    Read,
    Reader,
    ReaderTraining,
    ReadSettings,
    ReadTask,
    WorklistOrder,
)


class ReadOnlyAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    pass


@admin.register(ReadSettings)
class ReadSettingsAdmin(ReadOnlyAdmin):
    list_display = ["trial", "criteria", "adjudicate_on_overall", "adjudicate_on_bor", "adjudicate_on_pd_date"]


@admin.register(Reader)
class ReaderAdmin(ReadOnlyAdmin):
    list_display = ["user", "trial", "qualifications", "active", "added_at"]
    list_filter = ["active", "trial"]


@admin.register(ReaderTraining)
class ReaderTrainingAdmin(ReadOnlyAdmin):
    list_display = ["reader", "protocol_version", "topic", "trained_on"]


@admin.register(ReadTask)
class ReadTaskAdmin(ReadOnlyAdmin):
    list_display = ["subject", "visit", "slot", "reader", "status", "created_at", "signed_at"]
    list_filter = ["status", "slot", "trial"]


@admin.register(Read)
class ReadAdmin(ReadOnlyAdmin):
    list_display = ["task", "version", "status", "overall", "signed_at"]
    list_filter = ["status"]


@admin.register(WorklistOrder)
class WorklistOrderAdmin(ReadOnlyAdmin):
    list_display = ["reader", "seed", "created_at"]


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ["subject", "status", "adjudicator", "selected", "created_at", "resolved_at"]
    list_filter = ["status", "trial"]


@admin.register(BicrResult)
class BicrResultAdmin(ReadOnlyAdmin):
    list_display = ["subject", "visit", "overall", "source", "updated_at"]
    list_filter = ["source", "trial"]
