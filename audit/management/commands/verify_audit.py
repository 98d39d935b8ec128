from django.core.management.base import BaseCommand

from audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chains; exit 1 naming the first bad entry."

    def handle(self, *args, **options):
        result = audit_verify()
        if result.valid:
            self.stdout.write(
                self.style.SUCCESS(
                    f"audit chain valid: {result.checked} entries, head #{result.head_seq}"
                )
            )
            return
        self.stderr.write(
            f"audit chain INVALID at entry #{result.first_invalid_seq} "
            f"(after {result.checked} good entries): {result.reason}"
        )
        raise SystemExit(1)
