from django.apps import AppConfig


class QcConfig(AppConfig):
    name = "qc"
    verbose_name = "Quality control"

    def ready(self) -> None:
        from config import sweeper
        from deid.signals import instance_held
        from intake.signals import study_status_changed
        from trials import dashboard, navigation
        from trials.permissions import Perm

        from . import dashboard as panels
        from . import receivers

        study_status_changed.connect(receivers.on_study_status_changed, dispatch_uid="qc.on_study_status_changed")
        instance_held.connect(receivers.on_instance_held, dispatch_uid="qc.on_instance_held")
        sweeper.register(name="qc.studies", find=receivers.stuck_studies, requeue=receivers.requeue_study)
        navigation.register(navigation.NavItem("QC queue", "qc-queue", perm=Perm.QC_REVIEW, order=22))
        navigation.register(navigation.NavItem("Queries", "qc-queries", perm=(Perm.QC_REVIEW, Perm.SUBMIT_IMAGES),
                                               order=23))
        navigation.register(navigation.NavItem("QC metrics", "qc-metrics",
                                               perm=(Perm.QC_REVIEW, Perm.VIEW_DASHBOARDS), order=24))
        for order, (key, title, compute) in enumerate([
                ("qc-first-pass-trend", "First-pass acceptance over time", panels.first_pass_trend_panel),
                ("qc-first-pass-sites", "First-pass acceptance by site", panels.first_pass_by_site_panel),
                ("qc-failing-checks", "Failing checks by type", panels.failing_checks_panel),
                ("qc-open-queries", "Open queries by age", panels.open_queries_panel),
                ("qc-resolution", "Median query resolution time by site", panels.resolution_time_panel)]):
            dashboard.register(dashboard.Panel(key=key, title=title, page=dashboard.Page.QC, compute=compute,
                                               order=10 * (order + 1)))
        dashboard.register(dashboard.Panel(key="site-ranking", title="Sites needing attention",
                                           page=dashboard.Page.SITES, compute=panels.site_ranking_panel, order=10))
