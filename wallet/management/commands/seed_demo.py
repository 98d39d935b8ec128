"""Idempotent demo data for ``make run``: a few people with some history, and a staff user.
Their emails are verified, so the demo can pay them by email at once."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from wallet.models import User
from wallet.services.emails import email_verify, verification_token
from wallet.services.money import deposit_create, transfer_create, withdrawal_create
from wallet.services.requests import money_request_create, money_request_decline
from wallet.services.users import user_create

DEMO_PASSWORD = "quickpe-demo-2026"  # noqa: S105 - published demo credential, local data only
PEOPLE = [
    ("asha@demo.quickpe.test", "Asha", "Rao"),
    ("ravi@demo.quickpe.test", "Ravi", "Menon"),
    ("meera@demo.quickpe.test", "Meera", "Iyer"),
]
STAFF = ("support@demo.quickpe.test", "Sam", "Support")
DEMO_EMAILS = [email for email, _first, _last in [*PEOPLE, STAFF]]


class Command(BaseCommand):
    help = "Create demo users with history (does nothing if they already exist)."

    def handle(self, *args, **options):
        if not settings.IS_EMBEDDED:
            # Demo accounts share a published password: never in a configured deployment.
            raise CommandError(
                "seed_demo runs only against the embedded development database "
                "(DATABASE_URL set by manage.py or `python -m quickpe.embedded run`)."
            )
        if not User.objects.filter(email=PEOPLE[0][0]).exists():
            with transaction.atomic():
                self._create()
            self._requests()  # each request is its own (durable) transaction
        # Demo data seeded before emails were verified: verify it as its owners would.
        for user in User.objects.filter(email__in=DEMO_EMAILS, email_verified=False):
            email_verify(token=verification_token(user))
        lines = [f"Demo sign-ins (password for all: {DEMO_PASSWORD}):"]
        for email, first, _last in PEOPLE:
            user = User.objects.get(email=email)
            lines.append(f"  {email:<28} {user.quickpe_id}  {first}")
        lines.append(f"  {STAFF[0]:<28} staff: /admin/")
        self.stdout.write("\n".join(lines))

    def _create(self):
        asha, ravi, meera = (
            user_create(
                email=email,
                password=DEMO_PASSWORD,
                first_name=first,
                last_name=last,
                email_verified=True,
            )
            for email, first, last in PEOPLE
        )
        user_create(
            email=STAFF[0],
            password=DEMO_PASSWORD,
            first_name=STAFF[1],
            last_name=STAFF[2],
            is_staff=True,
            is_superuser=True,
            email_verified=True,
        )
        deposit_create(user=asha, amount=25_000_00, description="Salary top-up")
        deposit_create(user=ravi, amount=8_000_00)
        deposit_create(user=meera, amount=12_500_00)
        transfer_create(sender=asha, recipient=ravi, amount=450_00, note="Dinner", category="food")
        transfer_create(
            sender=ravi, recipient=meera, amount=1_200_00, note="Cab share", category="transport"
        )
        transfer_create(
            sender=meera,
            recipient=asha,
            amount=2_999_50,
            note="Concert tickets",
            category="entertainment",
        )
        withdrawal_create(user=asha, amount=5_000_00, description="To bank account")

    def _requests(self):
        asha, ravi, meera = (User.objects.get(email=email) for email, _first, _last in PEOPLE)
        money_request_create(requester=ravi, payer=asha, amount=300_00, note="Movie tickets")
        money_request_create(requester=asha, payer=meera, amount=1_250_00, note="Groceries")
        declined = money_request_create(requester=meera, payer=ravi, amount=99_00, note="Snacks")
        money_request_decline(user=ravi, money_request_id=declined.pk)
