"""Uploading a model zip in a real browser: the upload page sends it through the
upload-URL flow, the browser lands on the model page, and its build status
updates by itself until it reads success."""

import os

from playwright.sync_api import expect

from ...uploads.helpers import inference_zip, put_local, upload_url
from .conftest import SLOW_MS


def test_upload_a_model_zip_and_watch_its_build_reach_success(signed_in, live, workdir):
    tab, page = signed_in, signed_in.page
    archive = os.path.join(workdir, "doubler.zip")
    with open(archive, "wb") as out:
        out.write(inference_zip("2"))

    tab.menu("Upload").click()
    expect(page).to_have_url(live.url + "/ui/upload")
    page.get_by_label("Model name", exact=True).fill("doubler")
    page.get_by_label("Model zip", exact=True).set_input_files(archive)
    assert page.locator("#model-file").input_value().endswith("doubler.zip")
    tab.shot("upload")
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page).to_have_url(live.url + "/ui/models/doubler", timeout=60_000)
    status = page.locator("#build-status")
    expect(status).to_be_visible()
    description = page.locator("#model-description")
    # Read together, at one moment: before the build has read config.json there is no description to show.
    shown, hidden = page.evaluate("[document.getElementById('build-status').textContent.trim(),"
                                  " document.getElementById('model-description').hidden]")
    assert hidden or shown == "success", (shown, hidden)
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    tab.shot("model-building")
    # No reload: the page's live part polls until the build is final.
    expect(status).to_have_text("success", timeout=SLOW_MS)
    expect(status).to_have_class("status success")
    expect(page.locator("#build-log")).not_to_be_empty()
    expect(page.locator("#versions-table")).to_be_visible()
    expect(page.get_by_text("text-vectorisation").first).to_be_visible()  # the tasks it serves
    # The description its build read from config.json, in the About section, still without a reload.
    expect(description).to_have_text("code model")
    expect(description).to_be_visible()
    assert page.evaluate("window.sameDocument") is True
    tab.shot("model")

    tab.menu("Models").click()
    table = page.locator("#models-table")
    expect(table.get_by_role("link", name="doubler", exact=True)).to_be_visible()
    tab.shot("models")


def test_the_model_page_shows_the_description_its_build_brings_without_a_reload(signed_in, live):
    """The page is open before the zip arrives (its upload URL granted, nothing PUT yet); the build
    that follows reads config.json, and the About section gains the description by itself."""
    tab, page = signed_in, signed_in.page
    client, headers = live.api(), {"x-api-key": tab.key}
    url = upload_url(client, headers, "tripler")
    tab.go("/ui/models/tripler")
    expect(page.locator("#build-status")).to_have_text("awaiting upload")
    description = page.locator("#model-description")
    expect(description).to_be_hidden()
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    assert put_local(client, url, inference_zip("3")).status_code == 200
    expect(page.locator("#build-status")).to_have_text("success", timeout=SLOW_MS)
    expect(description).to_have_text("code model")
    expect(description).to_be_visible()
    assert page.evaluate("window.sameDocument") is True
    tab.shot("model-description-arrived")
