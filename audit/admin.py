from django.contrib import admin

from .models import AuditEvent


class ReadOnlyAdminMixin:
    """Regulated data changes only through services, which record audit events; the admin only shows it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: the database refuses changes anyway, and the admin must not pretend otherwise."""

    list_display = ["occurred_at", "actor_label", "actor_role", "action", "target_type", "target_label", "trial_id",
                    "seq"]
    list_filter = ["action", "trial_id"]
    search_fields = ["action", "actor_label", "target_label", "subject_code"]
    date_hierarchy = "occurred_at"
