"""Uploading a model zip in a real browser: the upload page sends it through the
upload-URL flow, the browser lands on the model page, and its build status
updates by itself until it reads success."""

import os

from playwright.sync_api import expect

from ...uploads.helpers import inference_zip
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
    tab.shot("model-building")
    # No reload: the page's live part polls until the build is final.
    expect(status).to_have_text("success", timeout=SLOW_MS)
    expect(status).to_have_class("status success")
    expect(page.locator("#build-log")).not_to_be_empty()
    expect(page.locator("#versions-table")).to_be_visible()
    expect(page.get_by_text("text-vectorisation").first).to_be_visible()  # the tasks it serves
    tab.shot("model")

    tab.menu("Models").click()
    table = page.locator("#models-table")
    expect(table.get_by_role("link", name="doubler", exact=True)).to_be_visible()
    tab.shot("models")
