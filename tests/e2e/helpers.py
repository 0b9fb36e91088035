"""What many browser tests do first: sign in as one of the demo trial's users."""

from playwright.sync_api import expect

from trials.demo import DEMO_USERS

PASSWORDS = {username: password for username, _, _, password in DEMO_USERS}


def demo_login(page, server, username: str) -> None:
    """Sign in through the login form as a demo user (``load_demo`` must have run) and land on the home page."""
    page.goto(f"{server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your trials")).to_be_visible()
