from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "intake"
    verbose_name = "Intake"

    def ready(self) -> None:
        from trials import dashboard, navigation
        from trials.permissions import Perm

        from . import dashboard as panels

        navigation.register(navigation.NavItem("Upload", "upload", perm=Perm.SUBMIT_IMAGES, order=12))
        navigation.register(navigation.NavItem("Received", "intake-submissions", order=13,
                                               perm=(Perm.SUBMIT_IMAGES, Perm.MANAGE_TRIAL, Perm.VIEW_ALL_SITES)))
        navigation.register(navigation.NavItem("Unassigned inbox", "intake-inbox",
                                               perm=(Perm.SUBMIT_IMAGES, Perm.MANAGE_TRIAL), order=14))
        navigation.register(navigation.NavItem("Expected vs. received", "intake-expected",
                                               perm=(Perm.SUBMIT_IMAGES, Perm.VIEW_ALL_SITES), order=16))
        # managers register senders; coordinators see their site's, read-only, to configure their PACS
        navigation.register(navigation.NavItem("DICOM senders", "intake-peers",
                                               perm=(Perm.MANAGE_TRIAL, Perm.SUBMIT_IMAGES), order=18))
        dashboard.register(dashboard.Panel(
            key="received-heatmap", title="Received vs. expected by site and timepoint",
            page=dashboard.Page.RECEIVED, compute=panels.received_heatmap_panel,
            drilldown=panels.received_drilldown, order=10))
        dashboard.register(dashboard.Panel(
            key="received-timepoints", title="Expected scans by timepoint", page=dashboard.Page.RECEIVED,
            compute=panels.received_by_timepoint_panel, order=20))
