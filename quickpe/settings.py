"""QuickPe settings. Every value comes from the environment through ``quickpe.env``; importing
this module only reads it: it starts no server and writes no file.

Production sets ``DATABASE_URL``, ``REDIS_URL`` and ``SECRET_KEY``. In development ``manage.py``
and ``python -m quickpe.embedded run -- COMMAND`` (``make run``, ``make test``, ...) start the
embedded PostgreSQL and Redis when the URLs are unset and set all three (``quickpe.embedded``).
The README lists every variable.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from quickpe.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_paise,
    env_rate,
    env_required,
    env_str,
)
from quickpe.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
# This deployment's files (Celery beat's schedule, exports by default); the embedded services
# keep their data here too.
DATA_DIR = Path(env_str("QUICKPE_DATA_DIR") or BASE_DIR / ".data").resolve()

_DEVELOPMENT = (
    "in development, run through manage.py or `python -m quickpe.embedded run -- COMMAND`"
    " (make run, make test), which start the embedded PostgreSQL and Redis and set it"
)
DATABASE_URL = env_required("DATABASE_URL", f"the PostgreSQL URL; {_DEVELOPMENT}")
# Rate limits and events must be shared by every process: never a private Redis.
REDIS_URL = env_required("REDIS_URL", f"the Redis every process shares; {_DEVELOPMENT}")
# Required as well, but checked when Django starts (wallet.apps), so that importing settings
# alone (tools, a deployment's checks) needs no secret; no process serves without one.
SECRET_KEY = env_str("SECRET_KEY", "")
SECRET_KEY_REQUIRED = f"SECRET_KEY must be set: a random string of 50+ characters; {_DEVELOPMENT}."
# Set with the URLs by the embedded start: a developer's machine, not production.
IS_EMBEDDED = env_bool("QUICKPE_EMBEDDED", False)
# Namespace for every QuickPe key in Redis (cache, rate limits, channel layer, Celery), so several
# deployments, or `make run` and `make test`, can share one Redis.
QUICKPE_REDIS_PREFIX = env_str("QUICKPE_REDIS_PREFIX", "quickpe")

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy (docs/production.md) the proxy sets X-Forwarded-Proto.
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not IS_EMBEDDED)
# HTTPS only, in a real deployment (deploy/README.md); development is plain HTTP on loopback.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not IS_EMBEDDED)
# Probes and the metrics scraper call over plain HTTP on the internal network.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if IS_EMBEDDED else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Preloading HSTS is a separate, hard-to-undo commitment made with the browser vendors: an
# operator's choice (SECURE_HSTS_PRELOAD), not a default, so its reminder is silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",
    "quickpe.apps.AdminConfig",  # django.contrib.admin with QuickPe's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    "wallet",
    "audit",
    "notifications",
    "analytics",
]

MIDDLEWARE = [
    "quickpe.middleware.RequestObservation",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After whitenoise, so static files keep their long-lived caching.
    "quickpe.middleware.NotStored",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "quickpe.urls"
WSGI_APPLICATION = "quickpe.wsgi.application"
ASGI_APPLICATION = "quickpe.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.context_processors.dashboard_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# Nothing waits forever: a statement, a lock wait and an idle open transaction all have a
# limit, set per connection. A lock or statement timeout in a request is a 503 problem (the
# transaction rolled back, nothing changed). `manage.py migrate` sets no statement limit (0).
# Export builds get their own, longer limit.
# The lock wait is short so that a wallet held by a stuck worker ties up each request waiting
# for it for 2 s at most, not every worker of the server while the rest of the API queues
# behind them; its requests answer `503 busy` and may be retried. The idle-transaction limit
# frees what a frozen worker holds well before gunicorn's WEB_TIMEOUT (30 s) would kill it;
# our transactions never wait on anything but the database, so 10 s idle is never one of ours.
_TIMEOUTS = {
    "statement_timeout": env_int("DATABASE_STATEMENT_TIMEOUT_MS", 30_000),
    "lock_timeout": env_int("DATABASE_LOCK_TIMEOUT_MS", 2_000),
    "idle_in_transaction_session_timeout": env_int("DATABASE_IDLE_TRANSACTION_TIMEOUT_MS", 10_000),
}
DATABASES["default"].setdefault("OPTIONS", {})["options"] = " ".join(
    f"-c {name}={milliseconds}" for name, milliseconds in _TIMEOUTS.items()
)
# A server that accepts no connection (hung, or a host gone) fails a connect after this many
# seconds instead of the kernel's minutes: a 503, and readiness's check thread freed.
DATABASES["default"]["OPTIONS"]["connect_timeout"] = env_int(
    "DATABASE_CONNECT_TIMEOUT", 5, minimum=1
)
# Separate names let several test runs share one server (pytest-xdist adds _gw0, _gw1, ...).
DATABASES["default"]["TEST"] = {"NAME": env_str("QUICKPE_TEST_DATABASE", "test_quickpe")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# No wait on Redis is long (quickpe/redis.py): what QuickPe keeps there is never the truth, and
# a request is better off without it than stuck behind a hung server. A healthy Redis answers
# in well under a millisecond. Django's cache passes these to redis-py too.
REDIS_TIMEOUT_SECONDS = 0.25
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": QUICKPE_REDIS_PREFIX,
        "OPTIONS": {
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        },
    }
}

# Per-user groups ("user.<pk>") shared by every daphne process. Messages are only doorbells:
# events live in PostgreSQL, so what the layer drops (a restart, a slow consumer) is replayed.
# That is what the pub/sub layer is for: a group send is one PUBLISH (the default layer runs
# Lua scripts that store messages, several times the CPU; docs/realtime.md), and nothing is
# stored. quickpe.realtime
# publishes doorbells in this layer's own format from the sync web workers, so another backend
# here also means another doorbell there.
# The layer's connections give up after a second (redis-py's default is 5 s, and the pub/sub
# connection re-subscribes on its own once Redis is back): longer than a request's Redis calls,
# since daphne's event loop may lag a little under load and a false timeout would drop every
# subscription of the process.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 1, "socket_connect_timeout": 1}],
            "prefix": f"{QUICKPE_REDIS_PREFIX}:channels",
        },
    }
}

# Celery: Redis broker (kombu spells a Unix socket redis+socket://), no result backend (tasks
# record their outcome in PostgreSQL), late acks so a job killed mid-way is delivered again.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL.replace(
    "unix://", "redis+socket://", 1
)
# Keep Django's LOGGING (structlog, JSON) in workers instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{QUICKPE_REDIS_PREFIX}:celery:",
    # kombu waits forever on a hung broker without these (a publish from a request, a reply):
    # a worker's own reads wait in its event loop, not on the socket, so they are unaffected.
    "socket_timeout": 1,
    "socket_connect_timeout": 1,
}
CELERY_TASK_DEFAULT_QUEUE = QUICKPE_REDIS_PREFIX
CELERY_BEAT_SCHEDULE = {
    "prune-events": {"task": "notifications.events_prune", "schedule": 3600},
    "purge-idempotency-keys": {"task": "wallet.idempotency_keys_purge", "schedule": 3600},
    # Requests are also shown expired on access the moment they pass their deadline; the job
    # writes that down (and tells both people) within five minutes.
    "expire-money-requests": {"task": "wallet.money_requests_expire", "schedule": 300},
    "requeue-stale-exports": {"task": "analytics.exports_requeue_stale", "schedule": 60},
    "purge-old-exports": {"task": "analytics.exports_purge", "schedule": 3600},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

AUTH_USER_MODEL = "wallet.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-in"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Daily limits and calendar days are counted in India's time zone.
QUICKPE_BUSINESS_TIME_ZONE = "Asia/Kolkata"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]  # the dashboard's CSS and JavaScript
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    # Built exports. Every web and worker process must see the same files: one host's folder,
    # or swap the backend for shared storage (django-storages) when workers run elsewhere.
    "exports": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Statements hold personal data: only the service's own user may read them.
        "OPTIONS": {
            "location": env_str("QUICKPE_EXPORT_DIR") or str(DATA_DIR / "exports"),
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
}
# Without collectstatic (tests, a quick shell) serve straight from the apps' folders.
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "staticfiles.json").exists()
if WHITENOISE_USE_FINDERS:
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("QUICKPE_MAX_BODY_BYTES", 64 * 1024, minimum=1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "quickpe.authentication.QuickPeJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["quickpe.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "quickpe.pagination.CursorPage",
    "DEFAULT_SCHEMA_CLASS": "quickpe.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "quickpe.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",  # UTC (USE_TZ, TIME_ZONE="UTC")
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env_int("QUICKPE_ACCESS_TOKEN_MINUTES", 15, minimum=1)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("QUICKPE_REFRESH_TOKEN_DAYS", 14, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY") or SECRET_KEY,
    "ALGORITHM": "HS256",
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "QuickPe API",
    "DESCRIPTION": (
        "Real-time digital wallet. Amounts are strings with exactly two decimals (INR); "
        "errors are RFC 9457 problem+json with a stable `code`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Four choice sets share the field name `kind`; name each after what it classifies.
    "ENUM_NAME_OVERRIDES": {
        "TransactionKindEnum": "wallet.models.LedgerEntry.Kind",
        "NotificationKindEnum": "notifications.models.Notification.Kind",
        "ExportKindEnum": "analytics.models.CUSTOMER_KINDS",
        "InsightKindEnum": "analytics.insights.KINDS",
    },
}

# Money rules (README: "Configuration"). Amounts are rupees in the environment, paise here.
QUICKPE_MIN_AMOUNT = env_paise("QUICKPE_MIN_AMOUNT", "1.00")
QUICKPE_MAX_PER_TRANSACTION = env_paise("QUICKPE_MAX_PER_TRANSACTION", "100000.00")
QUICKPE_DAILY_DEPOSIT_LIMIT = env_paise("QUICKPE_DAILY_DEPOSIT_LIMIT", "100000.00")
QUICKPE_DAILY_OUTGOING_LIMIT = env_paise("QUICKPE_DAILY_OUTGOING_LIMIT", "100000.00")
QUICKPE_MAX_BALANCE = env_paise("QUICKPE_MAX_BALANCE", "10000000.00")
QUICKPE_SIGNUP_BONUS = env_paise("QUICKPE_SIGNUP_BONUS", "0", allow_zero=True)

QUICKPE_MONEY_RATE = env_rate("QUICKPE_MONEY_RATE", "10/m")
QUICKPE_SIGNIN_RATE = env_rate("QUICKPE_SIGNIN_RATE", "5/m")
QUICKPE_SIGNIN_IP_RATE = env_rate("QUICKPE_SIGNIN_IP_RATE", "30/m")
QUICKPE_SIGNIN_ACCOUNT_RATE = env_rate("QUICKPE_SIGNIN_ACCOUNT_RATE", "30/m")
QUICKPE_SIGNUP_IP_RATE = env_rate("QUICKPE_SIGNUP_IP_RATE", "20/h")
QUICKPE_SEARCH_RATE = env_rate("QUICKPE_SEARCH_RATE", "30/m")
# Password reset emails support may send to one user: a mistaken or hostile staff member cannot
# flood a customer's inbox.
QUICKPE_SUPPORT_RESET_RATE = env_rate("QUICKPE_SUPPORT_RESET_RATE", "3/h")
# Verification links a user may ask for again (API and the dashboard's "Resend link"): enough
# for a mail that went astray, too few to flood an inbox that someone else signed up with.
QUICKPE_EMAIL_VERIFICATION_RATE = env_rate("QUICKPE_EMAIL_VERIFICATION_RATE", "3/h")
# How long a verification link works.
QUICKPE_EMAIL_VERIFICATION_HOURS = env_int("QUICKPE_EMAIL_VERIFICATION_HOURS", 24, minimum=1)

QUICKPE_MAX_SESSIONS = env_int("QUICKPE_MAX_SESSIONS", 10, minimum=1)
QUICKPE_MONEY_REQUEST_DAYS = env_int("QUICKPE_MONEY_REQUEST_DAYS", 7, minimum=1)

QUICKPE_EXPORT_RATE = env_rate("QUICKPE_EXPORT_RATE", "10/h")
QUICKPE_EXPORT_RETENTION_DAYS = env_int("QUICKPE_EXPORT_RETENTION_DAYS", 7, minimum=1)
# A running export whose worker has not reported for this long is handed to another worker.
# Workers report every second while they build (analytics.tasks), so ten missed reports mean
# the worker is gone: a killed worker's export starts again within seconds.
QUICKPE_EXPORT_STALE_SECONDS = env_int("QUICKPE_EXPORT_STALE_SECONDS", 10, minimum=1)
# A statement of several years reads its ledger through one server-side cursor, for minutes.
QUICKPE_EXPORT_STATEMENT_TIMEOUT_MS = env_int("QUICKPE_EXPORT_STATEMENT_TIMEOUT_MS", 600_000)
# A PDF's memory grows a little with its pages (reportlab's bookkeeping per page): past this
# many lines a PDF export fails with a message that suggests CSV, which has no limit. The
# default keeps a PDF build under 200 MB (bench/exports.py; numbers in docs/performance.md).
QUICKPE_PDF_MAX_LINES = env_int("QUICKPE_PDF_MAX_LINES", 1_000_000, minimum=1)

QUICKPE_IDEMPOTENCY_TTL_HOURS = env_int("QUICKPE_IDEMPOTENCY_TTL_HOURS", 24, minimum=1)
# How long WebSocket events stay replayable (the contract promises at least 24 hours).
QUICKPE_EVENT_RETENTION_HOURS = env_int("QUICKPE_EVENT_RETENTION_HOURS", 48, minimum=24)
# Independent hash chains in the audit log; see README "Audit chain".
QUICKPE_AUDIT_CHAINS = env_int("QUICKPE_AUDIT_CHAINS", 16, minimum=1)
if QUICKPE_AUDIT_CHAINS > 1024:  # the migration creates heads for chains 0..1023
    raise ImproperlyConfigured("QUICKPE_AUDIT_CHAINS must be at most 1024.")
# The public WebSocket URL advertised by /api/v1/realtime (daphne).
QUICKPE_WEBSOCKET_URL = env_str("QUICKPE_WEBSOCKET_URL", "ws://127.0.0.1:8001/ws/events/")

# Content-Security-Policy on every response (django-csp): scripts only from our own origin, no
# inline script anywhere (the dashboard's live.js, the admin's and Swagger UI's are files);
# inline style attributes are allowed (a bar's width). The event stream may be on its own port.
_WEBSOCKET_ORIGIN = "{0.scheme}://{0.netloc}".format(urlsplit(QUICKPE_WEBSOCKET_URL))
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", _WEBSOCKET_ORIGIN],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Email (verification links, password reset links sent by support). Development prints messages
# on the console; production sets an SMTP server, or another backend.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("EMAIL_FROM", "QuickPe <no-reply@quickpe.test>")

# /metrics (quickpe/metrics.py): open to these networks, or to a bearer of the token.
QUICKPE_METRICS_TOKEN = env_str("QUICKPE_METRICS_TOKEN", "")
try:
    QUICKPE_METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(network, strict=False)
        for network in env_list("QUICKPE_METRICS_ALLOWED_IPS", ["127.0.0.1/32", "::1/128"])
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"QUICKPE_METRICS_ALLOWED_IPS: {error}") from None

# Structured logs (quickpe/logs.py): JSON lines by default, readable lines for `make run`.
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ("json", "console"))
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
# How many proxies in front of the app append to X-Forwarded-For (0: trust REMOTE_ADDR only).
QUICKPE_TRUSTED_PROXIES = env_int("QUICKPE_TRUSTED_PROXIES", 0)
