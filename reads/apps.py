from django.apps import AppConfig


class ReadsConfig(AppConfig):
    name = "reads"
    verbose_name = "Central reads"

    def ready(self) -> None:
        from config import sweeper
        from intake.signals import study_status_changed
        from trials import navigation
        from trials.permissions import Perm

        from . import demo, receivers

        study_status_changed.connect(receivers.on_study_status_changed,
                                     dispatch_uid="reads.on_study_status_changed")
        sweeper.register(name="reads.timepoints", find=receivers.timepoints_without_tasks,
                         requeue=receivers.timepoint_tasks_ensure)
        demo.connect()
        navigation.register(navigation.NavItem("Reading", "reads-home",
                                               perm=(Perm.READ, Perm.ADJUDICATE, Perm.MANAGE_TRIAL), order=26))
