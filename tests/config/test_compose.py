"""docker-compose.yml cannot be started here (no Docker engine in CI); check what can be checked statically."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_defines_the_production_services_with_health_checks():
    services = _compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "gateway", "minio"} <= set(services)
    for name in ["postgres", "redis", "web", "worker", "minio"]:
        assert "healthcheck" in services[name], name
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert "dicom_gateway" in services["gateway"]["command"]
    assert services["postgres"]["volumes"] and services["redis"]["volumes"]


def test_compose_sets_only_variables_the_settings_read():
    settings_text = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\("([A-Z0-9_]+)"', settings_text))
    environment = _compose()["services"]["web"]["environment"]
    assert set(environment) <= read, set(environment) - read
    assert environment["STORAGE_BACKEND"] == "s3"


def test_the_image_installs_exactly_the_pinned_dependencies():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "['project']['dependencies']" in dockerfile and "npm ci" in dockerfile
    assert "collectstatic" in dockerfile and "USER corelab" in dockerfile
