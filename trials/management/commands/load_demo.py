from django.core.management.base import BaseCommand, CommandError

from trials.demo import DEMO_PROTOCOL, DEMO_USERS, database_is_empty, demo_load
from trials.models import Trial


class Command(BaseCommand):
    help = "Load the demo trial (two sites, a protocol version, one user per role) and print the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true",
                            help="do nothing when the database already holds a trial")

    def handle(self, *args, if_empty: bool, **options):
        if not database_is_empty():
            if if_empty:
                self.stdout.write("Database already holds trials; demo not loaded.")
                return
            if Trial.objects.filter(protocol_number=DEMO_PROTOCOL).exists():
                raise CommandError(f"demo trial {DEMO_PROTOCOL} already exists")
        trial = demo_load()
        self.stdout.write(self.style.SUCCESS(f"Loaded demo trial {trial.protocol_number}."))
        self.stdout.write("Demo logins (public demo passwords; change them before real use):")
        for username, role, site, password in DEMO_USERS:
            where = f" site {site}" if site else ""
            self.stdout.write(f"  {username:<12} {password:<24} {role.label}{where}")
