from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_seal, verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain: report the first broken link, or OK with the row count and head hash."

    def add_arguments(self, parser):
        parser.add_argument("--seal-first", action="store_true", help="seal pending events before verifying")

    def handle(self, *args, seal_first: bool, **options):
        if seal_first:
            self.stdout.write(f"sealed {chain_seal()} pending events")
        result = verify_chain()
        if not result.ok:
            raise CommandError(result.summary())
        self.stdout.write(self.style.SUCCESS(result.summary()))
