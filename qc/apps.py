from django.apps import AppConfig


class QcConfig(AppConfig):
    name = "qc"
    verbose_name = "Quality control"

    def ready(self) -> None:
        from config import sweeper
        from deid.signals import instance_held
        from intake.signals import study_status_changed
        from trials import navigation
        from trials.permissions import Perm

        from . import receivers

        study_status_changed.connect(receivers.on_study_status_changed, dispatch_uid="qc.on_study_status_changed")
        instance_held.connect(receivers.on_instance_held, dispatch_uid="qc.on_instance_held")
        sweeper.register(name="qc.studies", find=receivers.stuck_studies, requeue=receivers.requeue_study)
        navigation.register(navigation.NavItem("QC queue", "qc-queue", perm=Perm.QC_REVIEW, order=22))
        navigation.register(navigation.NavItem("Queries", "qc-queries", perm=(Perm.QC_REVIEW, Perm.SUBMIT_IMAGES),
                                               order=23))
        navigation.register(navigation.NavItem("QC metrics", "qc-metrics",
                                               perm=(Perm.QC_REVIEW, Perm.VIEW_DASHBOARDS), order=24))
