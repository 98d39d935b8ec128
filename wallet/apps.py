from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class WalletConfig(AppConfig):
    name = "wallet"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Every process sets Django up (gunicorn, daphne, Celery, manage.py): none starts without
        # the key that signs sessions and tokens. Settings leave the check here (quickpe.settings).
        if not settings._wrapped.SECRET_KEY:
            raise ImproperlyConfigured(settings.SECRET_KEY_REQUIRED)
