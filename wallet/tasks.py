from celery import shared_task
from django.db import OperationalError

from wallet.idempotency import idempotency_keys_purge as keys_purge
from wallet.models import User
from wallet.services.money import signup_bonus_credit as credit_bonus
from wallet.services.requests import money_requests_expire as expire_requests


@shared_task(name="wallet.idempotency_keys_purge")
def idempotency_keys_purge() -> int:
    """Delete idempotency keys past their window (an expired key starts afresh anyway)."""
    return keys_purge()


@shared_task(
    name="wallet.signup_bonus_credit",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def signup_bonus_credit(user_id: int) -> bool:
    """Credit a new user's signup bonus; safe to run twice (the service credits once)."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return user is not None and credit_bonus(user=user) is not None


@shared_task(name="wallet.money_requests_expire")
def money_requests_expire() -> int:
    """Write down expired money requests and tell both parties (they read as expired already)."""
    return expire_requests()
