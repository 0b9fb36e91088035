from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdminMixin

from .models import Membership, ProtocolVersion, Site, Trial


class ReadOnlyAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    pass


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ["protocol_number", "title", "sponsor", "phase", "status"]
    search_fields = ["protocol_number", "title", "sponsor"]


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ["trial", "number", "name", "country", "status"]
    list_filter = ["trial", "status"]


@admin.register(ProtocolVersion)
class ProtocolVersionAdmin(ReadOnlyAdmin):
    list_display = ["trial", "label", "effective_date", "is_current"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "trial", "role", "site"]
    list_filter = ["trial", "role"]
