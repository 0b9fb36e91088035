from django.core.management.base import BaseCommand, CommandError

from intake.gateway import DEFAULT_AE_TITLE, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PROCESSES, serve


class Command(BaseCommand):
    help = ("Run the DICOM C-STORE gateway: sites push to it under their registered calling AE titles. "
            "Runs until SIGINT or SIGTERM.")

    def add_arguments(self, parser):
        parser.add_argument("--ae-title", default=DEFAULT_AE_TITLE,
                            help=f"our AE title, the called AE title senders must use (default {DEFAULT_AE_TITLE})")
        parser.add_argument("--host", default=DEFAULT_HOST,
                            help=f"address to listen on (default {DEFAULT_HOST}: every interface; 127.0.0.1 for "
                                 "this machine only, :: for IPv6)")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
        parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES,
                            help=f"worker processes sharing the port, about one per core (default "
                                 f"{DEFAULT_PROCESSES})")

    def handle(self, *args, ae_title: str, host: str, port: int, processes: int, **options):
        ae_title = ae_title.strip()
        if not ae_title or len(ae_title) > 16 or "\\" in ae_title:
            raise CommandError("an AE title has 1 to 16 characters and no backslash")
        if processes < 1:
            raise CommandError("--processes must be 1 or more")
        try:
            status = serve(ae_title=ae_title, host=host, port=port, processes=processes)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another gateway "
                               "running? choose another port with --port") from exc
        if status:
            raise SystemExit(status)
