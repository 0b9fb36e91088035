"""Blinding, as people see it: every reader and adjudicator page and API response for a seeded trial is
rendered and scanned for what they must never see: the site (name, number, country), the treatment arm,
the other reader's identity and measurements, and how adjudication of the reader's subjects came out.

The trial is the one test_blinding_selectors seeds: real DICOM baseline, a W6 disagreement (reader B
measures 25.25 mm), resolved by the adjudicator with a recognisable rationale."""

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from reads.blinding import reading_id
from reads.models import ReadTask

from .conftest import PASSWORD
from .test_blinding_selectors import (  # noqa: F401  (fixtures: the seeded trial and its charter)
    ARM,
    COUNTRY,
    RATIONALE,
    SITE_NAME,
    SITE_NUMBER,
    reads_charter,
    seeded,
    stores,
)

pytestmark = pytest.mark.django_db

NAMES = {"reader1": ("Ingrid", "Quasimodo"), "reader2": ("Oswald", "Zyxwright"),
         "adjudicator": ("Petronella", "Vantablack")}
CSRF = re.compile(r'(name="csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]*"')


@pytest.fixture
def named(seeded):  # noqa: F811
    for username, (first, last) in NAMES.items():
        user = seeded.users[username]
        user.first_name, user.last_name = first, last
        user.save()
    return seeded


def scan(body: str, *, forbidden: list[str], words: list[str] = (), where: str = "") -> None:
    body = CSRF.sub("", body)  # random tokens could contain a two-letter country code by chance
    for value in forbidden:
        assert value not in body, f"{value!r} leaked in {where}"
    for word in words:
        assert not re.search(rf"\b{re.escape(word)}\b", body), f"{word!r} leaked in {where}"


def common_forbidden(seeded) -> list[str]:  # noqa: F811
    return [SITE_NAME, SITE_NUMBER, ARM, RATIONALE, seeded.study.acquisition_date.isoformat(),
            seeded.study.study_uid_hash, seeded.site.name]


def reader_bodies(seeded, username: str) -> list[tuple[str, str]]:  # noqa: F811
    """Every page and API response a reader gets in the seeded trial."""
    user = seeded.users[username]
    client, api = Client(), APIClient()
    client.force_login(user)
    api.force_authenticate(user)
    trial = seeded.trial.pk
    tasks = ReadTask.objects.filter(reader__user=user, status__in=ReadTask.LIVE)
    urls = ["/", "/reads/", f"/reads/trials/{trial}/worklist", f"/api/reads/trials/{trial}/worklist/"]
    for task in tasks:
        urls += [f"/reads/tasks/{task.pk}", f"/reads/tasks/{task.pk}?correct=1", f"/api/reads/tasks/{task.pk}/"]
    bodies = []
    for url in urls:
        response = (api if url.startswith("/api/") else client).get(url)
        assert response.status_code == 200, url
        bodies.append((url, response.content.decode()))
    for task in tasks:  # the live panel and a refused correction render too
        response = client.post(f"/reads/tasks/{task.pk}/assess", {"new_lesions": "NO"})
        bodies.append((f"assess {task.pk}", response.content.decode()))
        response = client.post(f"/reads/tasks/{task.pk}/correct", {"password": PASSWORD, "reason": ""})
        bodies.append((f"correct {task.pk}", response.content.decode()))
    return bodies


def test_reader_a_sees_nothing_of_site_arm_reader_b_or_adjudication(named):
    bodies = reader_bodies(named, "reader1")
    everything = "\n".join(body for _, body in bodies)

    assert reading_id(subject=named.subject) in everything and "Week 6" in everything  # what a reader sees
    assert "18 mm" in everything and "Ingrid Quasimodo" in everything  # own W6 read; own printed name to sign
    for url, body in bodies:
        scan(body, forbidden=[*common_forbidden(named), "reader2", "Oswald", "Zyxwright", "adjudicator",
                              "Petronella", "Vantablack", "Adjudicat", "adjudicat", "BICR"],
             words=[COUNTRY, "25.25"], where=url)  # a number as a word: "2.25.25…" is a pseudonymous UID


def test_reader_b_sees_nothing_of_reader_a(named):
    bodies = reader_bodies(named, "reader2")
    everything = "\n".join(body for _, body in bodies)

    assert "25.25" in everything  # B's own measurement
    for url, body in bodies:
        scan(body, forbidden=[*common_forbidden(named), "reader1", "Ingrid", "Quasimodo", "18 mm", '"T1": 18',
                              "Petronella", "Vantablack", "adjudicat", "Adjudicat", "BICR"],
             words=[COUNTRY], where=url)


def test_the_adjudicator_sees_a_and_b_but_no_reader_site_or_arm(named):
    user = named.users["adjudicator"]
    client, api = Client(), APIClient()
    client.force_login(user)
    api.force_authenticate(user)
    adj = named.adjudication.pk
    urls = ["/", "/reads/", f"/reads/trials/{named.trial.pk}/adjudications", f"/reads/adjudications/{adj}",
            f"/api/reads/trials/{named.trial.pk}/adjudications/", f"/api/reads/adjudications/{adj}/"]
    bodies = []
    for url in urls:
        response = (api if url.startswith("/api/") else client).get(url)
        assert response.status_code == 200, url
        bodies.append(response.content.decode())
    refused = client.post(f"/reads/adjudications/{adj}/resolve", {"selected": "A", "rationale": "x",
                                                                   "password": PASSWORD})
    assert refused.status_code == 409
    bodies.append(refused.content.decode())

    assert "25.25" in bodies[3] and "18 mm" in bodies[3] and "Read A" in bodies[3] and "Read B" in bodies[3]
    for body in bodies:
        scan(body, forbidden=[SITE_NAME, SITE_NUMBER, ARM, named.site.name, "reader1", "reader2", "Ingrid",
                              "Quasimodo", "Oswald", "Zyxwright", named.study.acquisition_date.isoformat()],
             words=[COUNTRY])


def test_the_scan_catches_a_leak():
    with pytest.raises(AssertionError, match="leaked"):
        scan(f"<td>{SITE_NAME}</td>", forbidden=[SITE_NAME])
    with pytest.raises(AssertionError, match="leaked"):
        scan(f"<td>{COUNTRY}</td>", forbidden=[], words=[COUNTRY])
    scan('<input name="csrfmiddlewaretoken" value="abNZcd">', forbidden=[], words=[COUNTRY])
