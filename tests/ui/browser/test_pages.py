"""Every page of an account that has a model, a dataset and a finished training job:
each loads in one request plus the UI's own static files (its content is in the
HTML, nothing asked of another origin), and each fits a phone-sized screen
without sideways scrolling."""

import re

import pytest
from playwright.sync_api import expect

from ...training.flow import add_dataset, iris_csv, start_job, wait_job
from ...uploads.helpers import deploy, inference_zip
from .conftest import PHONE


@pytest.fixture(scope="module")
def furnished(live):
    """An account's key, with a built model, a parsed dataset and a finished job, made through the API."""
    key = live.key("pages")
    client, headers = live.api(), {"x-api-key": key}
    assert deploy(client, headers, "phone-sized-model-name", inference_zip("2"))["build_status"] == "success"
    dataset = add_dataset(client, headers, iris_csv(), name="iris")
    assert dataset["status"] == "ready", dataset
    job = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])
    assert job["status"] == "succeeded", job
    return {"key": key, "model": "phone-sized-model-name", "dataset": dataset["id"], "job": job["id"]}


def pages_of(tab, furnished) -> list[str]:
    """The main menu's pages, then the detail pages of the account's things."""
    menu = [link.get_attribute("href") for link in tab.page.locator("header nav a").all()]
    assert "/ui/models" in menu and "/ui/keys" in menu, menu
    return menu + [f"/ui/models/{furnished['model']}", f"/ui/datasets/{furnished['dataset']}",
                   f"/ui/jobs/{furnished['job']}"]


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/ui/").lower()).strip("-")


def test_each_page_loads_in_one_request_plus_its_own_static_files(open_tab, live, furnished):
    tab = open_tab()
    tab.sign_in(furnished["key"])
    broken = {}
    for path in pages_of(tab, furnished):
        tab.requests.clear()
        tab.go(path)
        # Until the network is quiet: a script that fetched the page's content would show here.
        tab.page.wait_for_load_state("networkidle")
        tab.shot("page-" + slug(path))
        foreign = [url for _kind, url in tab.requests if not url.startswith((live.url + "/", "data:", "blob:"))]
        documents = [url for kind, url in tab.requests if kind == "document"]
        others = [f"{kind} {url.removeprefix(live.url)}" for kind, url in tab.requests
                  if kind != "document" and not url.startswith((live.url + "/ui/static/", "data:", "blob:"))]
        if foreign or documents != [live.url + path] or others:
            broken[path] = {"other origins": foreign, "documents": documents, "other requests": others}
    assert not broken, "pages that load more than one request plus static files:\n" + "\n".join(
        f"{path}: {problems}" for path, problems in broken.items())


def test_every_page_fits_a_phone_screen(open_tab, furnished):
    tab = open_tab(viewport=PHONE)
    tab.sign_in(furnished["key"])
    expect(tab.page.locator("#models-table")).to_be_visible()
    tab.shot("models-phone")
    too_wide = {}
    for path in pages_of(tab, furnished):
        tab.go(path)
        tab.page.wait_for_load_state("networkidle")
        width = tab.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[1] == PHONE["width"], width
        if width[0] > PHONE["width"]:  # the page scrolls sideways (a table may, inside its .table-wrap)
            too_wide[path] = width[0]
        tab.shot("phone-" + slug(path))
    tab.go("/ui/sign-in")
    tab.shot("sign-in-phone")
    assert not too_wide, too_wide


def test_ui_and_every_path_under_it_answer_as_pages(open_tab, live, furnished):
    """The README's link, /ui, reaches the sign-in page and then the models; an unknown page is a
    404 page in the UI's layout (after signing in), at desktop and phone width."""
    for viewport, suffix in ((None, ""), (PHONE, "-phone")):
        tab = open_tab(viewport=viewport)
        answer = tab.go("/ui")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")
        assert tab.page.url == live.url + "/ui/sign-in?next=/ui/"
        expect(tab.page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
        tab.page.get_by_label("API key", exact=True).fill(furnished["key"])
        tab.page.get_by_role("button", name="Sign in", exact=True).click()
        expect(tab.page).to_have_url(live.url + "/ui/models")

        answer = tab.go("/ui/no-such-page")
        assert answer.status == 404 and answer.headers["content-type"].startswith("text/html")
        expect(tab.page.get_by_role("heading", name="Not found", exact=True)).to_be_visible()
        expect(tab.page.get_by_role("alert")).to_have_text(re.compile("There is no page at /ui/no-such-page"))
        expect(tab.menu("Models")).to_be_visible()  # the UI's layout, its menu included
        tab.shot("not-found" + suffix)
        tab.page.get_by_role("link", name="Back to your models", exact=True).click()
        expect(tab.page).to_have_url(live.url + "/ui/models")


def test_a_table_wider_than_a_phone_says_it_scrolls_and_scrolls_from_the_keyboard(open_tab, furnished):
    tab = open_tab(viewport=PHONE)
    tab.sign_in(furnished["key"])
    page = tab.page
    for path, table in (("/ui/models", "#global-models-table"), ("/ui/usage", "#usage-table")):
        tab.go(path)
        wrap = page.locator(".table-wrap", has=page.locator(table))
        expect(wrap).to_have_attribute("data-overflows", "")
        cue = wrap.evaluate("element => getComputedStyle(element, '::before').content")
        assert "Scroll sideways" in cue, cue
        wrap.focus()  # a named region the keyboard reaches
        assert wrap.get_attribute("tabindex") == "0" and "scrolls sideways" in wrap.get_attribute("aria-label")
        assert wrap.evaluate("element => element.scrollLeft") == 0
        page.keyboard.press("ArrowRight")
        assert scrolled_sideways(wrap), path
        tab.shot("phone-table-scrolls-" + slug(path))
    # Wide enough for the table: no cue.
    tab.page.set_viewport_size({"width": 1280, "height": 900})
    tab.go("/ui/usage")
    expect(page.locator(".table-wrap", has=page.locator("#usage-table"))).not_to_have_attribute("data-overflows", "")


def scrolled_sideways(wrap, tries: int = 50) -> bool:
    """Whether the element has scrolled right (the arrow key's scroll may be smooth, so asked a few
    times; page.wait_for_function would evaluate a string, which the pages' CSP forbids)."""
    for _ in range(tries):
        if wrap.evaluate("element => element.scrollLeft") > 0:
            return True
        wrap.page.wait_for_timeout(100)
    return False
