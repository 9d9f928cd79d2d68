"""Keys in a real browser: create one (shown once), revoke the key this session
signed in with, and see the session end and that key refused at sign-in."""

import re

from playwright.sync_api import expect


def test_create_a_key_then_revoke_the_session_key_and_be_refused(signed_in, live):
    tab, page = signed_in, signed_in.page
    tab.menu("Keys").click()
    expect(page).to_have_url(live.url + "/ui/keys")
    expect(page.locator("#keys-table")).to_be_visible()

    page.get_by_label("Label", exact=True).fill("laptop")
    page.get_by_role("button", name="Create key", exact=True).click()
    new_key = page.locator("#new-key")
    expect(new_key).to_be_visible()
    shown = new_key.inner_text().strip()
    assert shown.startswith("ik_") and shown != tab.key
    expect(page.locator("#keys-table")).to_contain_text("laptop")
    tab.shot("keys-created")

    # The copy button: reached from the key with Tab, pressed with Enter, and the key is on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    new_key.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy the key", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == shown
    tab.shot("keys-copied")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)  # shown once
    tab.shot("keys")

    # The row of the key this session signed in with: its prefix is the key's first characters.
    rows = page.locator("#keys-table tbody tr")
    own = [row for row in rows.all() if _prefix_in(row.inner_text(), tab.key)]
    assert len(own) == 1, [row.inner_text() for row in rows.all()]
    own[0].get_by_role("button", name="Revoke", exact=True).click()  # data-confirm: accepted (see open_tab)
    page.wait_for_load_state()

    # The session has ended: the next page asks for a key again.
    page.goto(live.url + "/ui/models")
    expect(page).to_have_url(live.url + "/ui/sign-in?next=/ui/models")
    page.get_by_label("API key", exact=True).fill(tab.key)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("That key is not valid or has been revoked.")
    tab.shot("keys-revoked-sign-in-refused")

    # The key created above still works.
    page.get_by_label("API key", exact=True).fill(shown)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(live.url + "/ui/models")


def _prefix_in(text: str, key: str) -> bool:
    """A key list shows the key's prefix (its first 10 characters), never the key."""
    return key[:10] in text


def test_where_the_clipboard_is_out_of_reach_the_copy_button_selects_the_key(signed_in, live):
    """A page over plain http from another host has no navigator.clipboard: the button selects the key."""
    tab, page = signed_in, signed_in.page
    page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined})")
    tab.go("/ui/keys")
    assert page.evaluate("navigator.clipboard") is None
    page.get_by_role("button", name="Create key", exact=True).click()
    shown = page.locator("#new-key").inner_text().strip()
    page.get_by_role("button", name="Copy the key", exact=True).click()
    assert page.evaluate("window.getSelection().toString()").strip() == shown
    # Chromium still copies a selection (execCommand); a browser that will not is told to press Ctrl+C.
    expect(page.locator("#copy-status")).to_have_text(
        re.compile(r"^(Copied to the clipboard\.|Selected: press Ctrl\+C .*)$"))
    tab.shot("keys-copy-selects")
