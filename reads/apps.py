from django.apps import AppConfig


class ReadsConfig(AppConfig):
    name = "reads"
    verbose_name = "Central reads"

    def ready(self) -> None:
        from config import sweeper
        from deid.signals import study_deidentified
        from intake.signals import study_status_changed
        from trials import dashboard, navigation
        from trials.permissions import Perm

        from . import dashboard as panels
        from . import demo, receivers, reports
        from .dicomweb import warm

        study_status_changed.connect(receivers.on_study_status_changed,
                                     dispatch_uid="reads.on_study_status_changed")
        # a released study's headers go into the DICOMweb cache before anyone opens it
        study_deidentified.connect(warm.on_study_deidentified, dispatch_uid="reads.dicomweb_headers_warm")
        sweeper.register(name="reads.timepoints", find=receivers.timepoints_without_tasks,
                         requeue=receivers.timepoint_tasks_ensure)
        sweeper.register(name="reads.measurement_reports", find=reports.reports_stuck,
                         requeue=reports.measurement_report_enqueue)
        demo.connect()
        navigation.register(navigation.NavItem("Reading", "reads-home",
                                               perm=(Perm.READ, Perm.ADJUDICATE, Perm.MANAGE_TRIAL), order=26))
        for order, (key, title, compute) in enumerate([
                ("reads-status", "Timepoints by read status", panels.read_status_panel),
                ("reads-adjudication", "Adjudication rate over time", panels.adjudication_rate_panel),
                ("reads-agreement", "Inter-reader agreement (Cohen's kappa) per reader pair", panels.agreement_panel),
                ("reads-throughput", "Reader throughput: reads signed per month", panels.throughput_panel)]):
            dashboard.register(dashboard.Panel(key=key, title=title, page=dashboard.Page.READS, compute=compute,
                                               order=10 * (order + 1)))
