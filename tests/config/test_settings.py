import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "SECRET_KEY": "k" * 20 + "-production-like-secret-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "corelab.example.org",
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_COOKIES": "true",
    "PSEUDONYM_KEY": "production-like-pseudonym-key-0123456789abcdef",
}


def _manage(*args, env):
    # the browser tests relax async safety for their own process only; a deployment never does
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_passes_with_production_like_environment():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = _manage("check", env={**env, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_debug_is_off_unless_asked_for():
    assert settings.DEBUG is False


def test_every_deployment_setting_comes_from_the_environment():
    text = (ROOT / "config" / "settings.py").read_text()
    for name in ["DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "STORAGE_BACKEND", "DEBUG"]:
        assert f'env("{name}"' in text or f'env.bool("{name}"' in text or f'env.list("{name}"' in text \
            or f'env.db("{name}"' in text, name


@pytest.mark.django_db
def test_openapi_schema_and_docs_page_are_served_without_a_cdn(client, trial_manager):
    client.force_login(trial_manager)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    body = schema.json()
    assert body["openapi"].startswith("3.") and "/api/trials/" in body["paths"]
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn." not in docs and "jsdelivr" not in docs


def test_readme_opens_with_the_commands_ci_uses():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec make test" in ci
    setup = readme.split("\n## ", 2)[1]  # the first section after the title
    assert "make run" in setup and "make test" in setup
    makefile = (ROOT / "Makefile").read_text()
    for target in ["install:", "run:", "test:", "bench:", "lint:"]:
        assert f"\n{target}" in makefile, target
