import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_reports_database_redis_and_worker(client, worker):
    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert any(name.startswith("test-") for name in body["checks"]["worker"]["workers"])


def test_healthz_says_which_part_is_down(client):
    # no worker fixture here: nothing answers the ping
    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert body["checks"]["worker"] == {"ok": False, "error": "RuntimeError: no Celery worker answered a ping within 1 s"}
