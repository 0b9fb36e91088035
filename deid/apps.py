from django.apps import AppConfig


class DeidConfig(AppConfig):
    name = "deid"
    verbose_name = "De-identification"

    def ready(self) -> None:
        from config import sweeper
        from intake.signals import instance_received
        from trials import navigation
        from trials.permissions import Perm

        from . import demo, queue, sweep

        instance_received.connect(queue.on_instance_received, dispatch_uid="deid.on_instance_received")
        sweeper.register(name="deid.series", find=sweep.stuck_series, requeue=sweep.requeue_series)
        navigation.register(navigation.NavItem("De-identification", "deid-profile", perm=Perm.MANAGE_TRIAL, order=19))
        demo.connect()
