from django.apps import AppConfig


class TrialsConfig(AppConfig):
    name = "trials"
    verbose_name = "Trials"

    def ready(self) -> None:
        from audit.services import register_context_resolver

        from . import navigation
        from .services import audit_context

        register_context_resolver(audit_context)
        navigation.register(navigation.NavItem("Trials", "home", order=0))
        navigation.register(navigation.NavItem("API", "api-docs", order=90))
        navigation.register(navigation.NavItem("Admin", "admin:index", staff_only=True, order=99))
