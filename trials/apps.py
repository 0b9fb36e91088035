from django.apps import AppConfig


class TrialsConfig(AppConfig):
    name = "trials"
    verbose_name = "Trials"

    def ready(self) -> None:
        from audit.services import register_context_resolver

        from . import checks, navigation  # noqa: F401  (checks registers itself)
        from .permissions import Perm
        from .services import audit_context

        register_context_resolver(audit_context)
        navigation.register(navigation.NavItem("Trials", "home", order=0))
        navigation.register(navigation.NavItem("My site", "my-site", perm=Perm.SUBMIT_IMAGES, order=10))
        navigation.register(navigation.NavItem("Qualification review", "qualification-queue",
                                               perm=Perm.REVIEW_QUALIFICATION, order=20))
        # the auditor's workspace lives in audit/, which may not import this registry
        navigation.register(navigation.NavItem("Audit", "audit-search", perm=Perm.VIEW_AUDIT, order=80))
        navigation.register(navigation.NavItem("API", "api-docs", order=90))
        navigation.register(navigation.NavItem("Admin", "admin:index", staff_only=True, order=99))
