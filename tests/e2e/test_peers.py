import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from audit.models import AuditEvent
from intake.models import GatewayPeer
from intake.selectors import gateway_peer_for
from trials.models import Site

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]




def test_a_manager_registers_a_sites_pacs_then_deactivates_it(app_server, page):
    call_command("load_demo")
    demo_login(page, app_server, "manager")

    page.get_by_role("link", name="DICOM senders").click()
    expect(page.get_by_role("heading", name="DICOM senders")).to_be_visible()
    expect(page.locator("#gateway")).to_contain_text("CORELAB")
    expect(page.locator("#peers-site-101")).to_contain_text("No sender registered for this site")

    page.get_by_text("Register a sender").click()
    page.get_by_label("Site").select_option(str(Site.objects.get(number="101").pk))
    page.get_by_label("Calling AE title").fill("RUH_PACS")
    page.get_by_label("Source address").fill("127.0.0.1")
    page.get_by_role("button", name="Register sender").click()

    # htmx swapped the page in place: the sender is listed and the example uses its AE title
    expect(page.get_by_role("status")).to_contain_text("RUH_PACS may now send for site 101")
    row = page.locator("#peers-site-101").get_by_role("row", name="RUH_PACS")
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text("Active")
    expect(page.locator("#storescu-example")).to_contain_text("storescu -aec CORELAB -aet RUH_PACS 127.0.0.1 ")
    peer = GatewayPeer.objects.get(ae_title="RUH_PACS")
    assert peer.site.number == "101" and gateway_peer_for(ae_title="RUH_PACS", address="127.0.0.1") == peer

    row.get_by_label("Why deactivate").fill("PACS replaced")
    row.get_by_role("button", name="Deactivate RUH_PACS").click()
    expect(page.get_by_role("status")).to_contain_text("Sender RUH_PACS deactivated")
    expect(page.locator("#peers-site-101").get_by_role("row", name="RUH_PACS")).to_contain_text("Inactive")
    assert gateway_peer_for(ae_title="RUH_PACS", address="127.0.0.1") is None
    assert AuditEvent.objects.get(action="intake.gateway_peer_deactivated").reason == "PACS replaced"
