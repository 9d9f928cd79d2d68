"""Signing in through the form, in a real browser: a wrong key is refused with the
page's message; the right one lands on the models page. Then the same with the
keyboard alone."""

from playwright.sync_api import expect


def test_a_wrong_key_is_refused_and_the_right_one_lands_on_the_models_page(open_tab, live):
    tab = open_tab()
    tab.go("/ui/models")
    assert "/ui/sign-in" in tab.page.url  # not signed in yet: sent to sign in, then back
    expect(tab.page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    # The hint's command as it runs on a fresh clone (flask is in the venv, not on PATH).
    expect(tab.page.locator("#key-help")).to_contain_text(".venv/bin/flask --app wsgi keys create --account NAME")
    tab.shot("sign-in")

    tab.page.get_by_label("API key", exact=True).fill("ik_not-a-key-of-anyone")
    tab.page.get_by_role("button", name="Sign in", exact=True).click()
    expect(tab.page.get_by_role("alert")).to_have_text("That key is not valid or has been revoked.")
    tab.shot("sign-in-refused")

    tab.page.get_by_label("API key", exact=True).fill(live.key("u-sign-in"))
    tab.page.get_by_role("button", name="Sign in", exact=True).click()
    expect(tab.page).to_have_url(live.url + "/ui/models")
    expect(tab.page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
    expect(tab.page.locator(".account")).to_have_text("u-sign-in")
    tab.shot("models-empty")


def test_the_sign_in_form_works_from_the_keyboard_alone(open_tab, live):
    tab = open_tab()
    tab.go("/ui/sign-in")
    page = tab.page
    key_field = page.get_by_label("API key", exact=True)
    button = page.get_by_role("button", name="Sign in", exact=True)
    focused = "document.activeElement.id || document.activeElement.textContent.trim()"
    assert page.evaluate(focused) == "key"  # autofocus: type the key straight away
    for _ in range(5):  # back to the top of the page: the skip link comes first
        page.keyboard.press("Shift+Tab")
        if page.evaluate(focused) == "Skip to content":
            break
    assert page.evaluate(focused) == "Skip to content"
    reached = []
    for _ in range(10):  # then forward, as a reader tabs through the page
        page.keyboard.press("Tab")
        reached.append(page.evaluate(focused))
        if reached[-1] == "Sign in":
            break
    assert "key" in reached and reached[-1] == "Sign in", reached
    assert reached.index("key") < reached.index("Sign in")  # the field, then its button
    expect(button).to_be_focused()

    page.keyboard.press("Shift+Tab")
    expect(key_field).to_be_focused()
    page.keyboard.type(live.key("u-keyboard"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(live.url + "/ui/models")
    # The focus ring is visible on the focused control (:focus-visible outline).
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
