"""The playground in a real browser: choose a task and a model, fill in its field,
run it, and see the answer and the curl command for the same request."""

import re

from playwright.sync_api import expect

from ...uploads.helpers import deploy, inference_zip


def test_run_text_vectorisation_on_an_uploaded_model_and_see_its_vector(signed_in, live):
    tab, page = signed_in, signed_in.page
    # A model of the account's own, deployed through the JSON API: [2 * len(text), 1.0] for each text.
    built = deploy(live.api(), {"x-api-key": tab.key}, "doubler", inference_zip("2"))
    assert built["build_status"] == "success", built

    tab.menu("Playground").click()
    expect(page).to_have_url(re.compile(re.escape(live.url + "/ui/playground")))
    page.get_by_label("Task", exact=True).select_option("text-vectorisation")
    # The script swaps in the task's fields (and its model list), then names the task in the URL.
    page.wait_for_url(re.compile(r"/ui/playground\?task=text-vectorisation$"))
    page.get_by_label("Model", exact=True).select_option("doubler")
    page.locator("#field-text").fill("abcd")
    tab.shot("playground-filled")
    page.get_by_role("button", name="Run", exact=True).click()

    answer = page.locator("#answer")
    expect(answer).to_contain_text("vector", timeout=60_000)
    expect(answer).to_contain_text(re.compile(r"8(\.0)?,\s*1(\.0)?"))  # 2 * len("abcd"), 1.0
    curl = page.locator("#curl")
    expect(curl).to_contain_text("curl")
    expect(curl).to_contain_text(live.url + "/text-vectorisation")  # this service, as the browser reached it
    expect(curl).to_contain_text("doubler")
    # Copy puts the command, as shown, on the clipboard (the same button as the keys page's: ui.js).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == curl.text_content().strip()
    tab.shot("playground")
