"""The reading-rules page: trial managers change adjudication triggers and RECIST options with a reason."""

import pytest

from audit.models import AuditEvent
from reads.models import ReadSettings

pytestmark = pytest.mark.django_db

RULES = {"adjudicate_on_overall": "on", "adjudicate_on_bor": "on", "min_confirm_days": "28", "max_ne_between": "1",
         "min_sd_days": "42"}  # the defaults, with the date-of-progression trigger off


def url(trial) -> str:
    return f"/reads/oversight/trials/{trial.pk}/rules"


def test_a_manager_changes_the_rules_with_a_reason_and_it_is_audited(client, reading):
    client.force_login(reading.manager)
    page = client.get(url(reading.trial)).content.decode()
    assert "Date of progression differs" in page and 'name="adjudicate_on_pd_date"' in page

    response = client.post(url(reading.trial), {**RULES, "confirmation_required": "on",
                                                "reason": "Charter 1.1 adjudicates on response only"})

    assert response.status_code == 302
    rules = ReadSettings.objects.get(trial=reading.trial)
    assert (rules.adjudicate_on_pd_date, rules.confirmation_required, rules.adjudicate_on_overall) == (False, True, True)
    event = AuditEvent.objects.get(action="reads.settings_changed")
    assert event.actor == reading.manager and event.reason == "Charter 1.1 adjudicates on response only"
    assert event.details["before"] == {"adjudicate_on_pd_date": True, "confirmation_required": False}
    assert rules.history.first().history_change_reason == "Charter 1.1 adjudicates on response only"


@pytest.mark.parametrize(("data", "error"), [
    ({**RULES, "reason": ""}, "This field is required."),
    ({**RULES, "min_sd_days": "-3", "reason": "x"}, "greater than or equal to 0"),
    ({**RULES, "adjudicate_on_pd_date": "on", "reason": "no change"}, "Nothing changed"),
])
def test_bad_input_says_why_and_changes_nothing(client, reading, data, error):
    client.force_login(reading.manager)
    response = client.post(url(reading.trial), data)
    assert response.status_code == 200 and error in response.content.decode()
    assert not ReadSettings.objects.exists() and not AuditEvent.objects.filter(action="reads.settings_changed").exists()


def test_an_auditor_reads_the_rules_but_cannot_change_them(client, reading, auditor):
    client.force_login(auditor)
    page = client.get(url(reading.trial))
    assert page.status_code == 200 and 'id="reading-rules"' in page.content.decode()
    assert 'name="reason"' not in page.content.decode()
    assert client.post(url(reading.trial), {**RULES, "reason": "x"}).status_code == 404
    assert not ReadSettings.objects.exists()


@pytest.mark.parametrize("who", ["reader1", "sponsor", "coordinator_site1", "outsider"])
def test_everyone_else_gets_404(client, request, reading, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(url(reading.trial)).status_code == 404
    assert client.post(url(reading.trial), {**RULES, "reason": "x"}).status_code == 404
