"""Corelab settings: one file; deployments differ only by environment variables."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else environ.Env.NOTSET)
if not SECRET_KEY.strip():
    raise ImproperlyConfigured("Set the SECRET_KEY environment variable (make run keeps one in var/secret_key)")
# Master key for per-trial pseudonym keys (trials.keys). Set it in production and never rotate it:
# stored identifier hashes depend on it. Derived from SECRET_KEY when unset, for development.
PSEUDONYM_KEY = env("PSEUDONYM_KEY", default="") or f"derived-from-secret-key:{SECRET_KEY}"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_htmx",
    "template_partials",
    "axes",
    "audit",
    "trials",
    "intake",
    "deid",
    "qc",
    "reads",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "audit.middleware.AuditContextMiddleware",
    # last, as django-axes asks
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "trials.context_processors.navigation",
                "audit.context_processors.chain_alert",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/corelab")}
if not DATABASES["default"].get("HOST") and "host" in DATABASES["default"].get("OPTIONS", {}):
    # postgres://user@/name?host=/socket/dir: a unix socket (the embedded server)
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")


def _celery_url(url: str) -> str:
    # redis-py speaks unix://; kombu wants redis+socket:// for the same socket, and takes the database
    # number from virtual_host there (it ignores ?db=, and would use database 0)
    if not url.startswith("unix://"):
        return url
    path, _, query = url.removeprefix("unix://").partition("?")
    db = dict(parse_qsl(query)).get("db", "0")
    return f"redis+socket://{path}?virtual_host={db}"


CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="corelab")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "audit-seal": {"task": "audit.chain_seal", "schedule": env.float("AUDIT_SEAL_INTERVAL", default=2.0)},
    "audit-verify-nightly": {"task": "audit.chain_verify", "schedule": timedelta(hours=24)},
    "sweep-stuck-work": {"task": "config.sweep_stuck", "schedule": timedelta(minutes=1)},
    "deid-quarantine-purge": {"task": "deid.quarantine_purge", "schedule": timedelta(hours=1)},
    "qc-queries-overdue": {"task": "qc.queries_mark_overdue", "schedule": timedelta(hours=1)},
}
# QC raises a "missing timepoint" query when a visit's window closes with a procedure not received (off by default)
QC_AUTO_MISSING_QUERIES = env.bool("QC_AUTO_MISSING_QUERIES", default=False)
if QC_AUTO_MISSING_QUERIES:
    CELERY_BEAT_SCHEDULE["qc-queries-missing"] = {"task": "qc.queries_raise_missing", "schedule": timedelta(hours=6)}
# Work sitting in an intermediate state longer than this is re-enqueued by the sweeper.
STUCK_WORK_AFTER = timedelta(seconds=env.int("STUCK_WORK_AFTER_SECONDS", default=600))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# reasons for change can be long (they quote what changed and why): a text column, not varchar(100)
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Cookies and transport: secure by default, relaxed only for the local http dev server.
SECURE_COOKIES = env.bool("SECURE_COOKIES", default=not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"),
]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")

# Two file stores: quarantine (raw files with PHI) and archive (de-identified).
# Local folders under var/ by default; S3-compatible when STORAGE_BACKEND=s3.
if env("STORAGE_BACKEND", default="local") == "s3":
    _s3 = {
        "endpoint_url": env("S3_ENDPOINT_URL", default=None),
        "access_key": env("S3_ACCESS_KEY", default=None),
        "secret_key": env("S3_SECRET_KEY", default=None),
        "default_acl": "private",
        "file_overwrite": False,
    }
    _storages = {
        "quarantine": {"BACKEND": "storages.backends.s3.S3Storage",
                       "OPTIONS": {**_s3, "bucket_name": env("S3_QUARANTINE_BUCKET", default="quarantine")}},
        "archive": {"BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {**_s3, "bucket_name": env("S3_ARCHIVE_BUCKET", default="archive")}},
        "default": {"BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {**_s3, "bucket_name": env("S3_MEDIA_BUCKET", default="media")}},
    }
else:
    _storages = {
        "quarantine": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                       "OPTIONS": {"location": env.path("QUARANTINE_ROOT", default=VAR_DIR / "quarantine"),
                                   "file_permissions_mode": 0o600}},
        "archive": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": env.path("ARCHIVE_ROOT", default=VAR_DIR / "archive")}},
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": MEDIA_ROOT}},
    }
STORAGES = {
    **_storages,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
                    if not DEBUG else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Intake limits: a file or archive over these is refused with a reason, never half-stored.
# where the C-STORE gateway keeps received instances until its filer has filed them (local disk, PHI)
INTAKE_SPOOL_DIR = env.path("INTAKE_SPOOL_DIR", default=VAR_DIR / "spool")
INTAKE_MAX_FILE_BYTES = env.int("INTAKE_MAX_FILE_BYTES", default=2 * 1024**3)
INTAKE_MAX_ARCHIVE_BYTES = env.int("INTAKE_MAX_ARCHIVE_BYTES", default=8 * 1024**3)  # uncompressed total
INTAKE_MAX_ZIP_RATIO = env.int("INTAKE_MAX_ZIP_RATIO", default=100)  # per member, uncompressed / compressed
INTAKE_MAX_ARCHIVE_MEMBERS = env.int("INTAKE_MAX_ARCHIVE_MEMBERS", default=20000)
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR", default=None)

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="corelab@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Corelab API",
    "DESCRIPTION": "Imaging core lab for clinical trials: trials, sites, intake, QC, reads and audit.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # the docs page works offline: Swagger UI comes from the sidecar package, not a CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    # several models have a "status" with their own choices: name each enum after its model
    "ENUM_NAME_OVERRIDES": {
        "TrialStatusEnum": "trials.models.Trial.Status",
        "SiteStatusEnum": "trials.models.Site.Status",
        "QualificationStatusEnum": "trials.models.SiteQualification.Status",
        "SubjectStatusEnum": "trials.models.Subject.Status",
    },
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
