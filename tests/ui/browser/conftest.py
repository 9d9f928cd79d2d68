"""Browser tests of the web UI: Debian's Chromium, driven by Playwright's Python
package, against the service running in a thread on 127.0.0.1.

Playwright is pointed at the system browser (`chromium` on PATH, from Debian's
package, which scripts/test installs); it never downloads a browser build of its
own. Without the system browser the tests fail, saying so: they are never skipped.

Every test saves full-page screenshots of what it saw under test-artifacts/ui/
(kept by CI as artefacts). With UI_SCREENSHOTS_TO_DOCS=1 in the environment
(scripts/ui_screenshots sets it) the models page and the training run page are
also written to docs/ui-models.png and docs/ui-training-run.png, the README's.

One server serves every browser test, building models and training jobs as the
service does; each test module signs in as an account of its own, in a fresh
browser context, so tests never see each other's things.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest

from app import create_app

from ...conftest import LiveServer, new_key

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ARTIFACTS = os.path.join(REPO, "test-artifacts", "ui")
DOCS_ENV = "UI_SCREENSHOTS_TO_DOCS"
# Screenshot name -> the README's copy under docs/, written only with UI_SCREENSHOTS_TO_DOCS=1.
DOCS_SCREENSHOTS = {"models": "ui-models.png", "training-run": "ui-training-run.png"}
PHONE = {"width": 390, "height": 844}
# Builds and training runs share two cores with everything else: generous, never a threshold.
SLOW_MS = 240_000


def system_chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail("Debian's chromium is not installed, and the browser tests need it: run scripts/test, which "
                    "installs it (apt-get install chromium). Playwright must not download a browser of its own.",
                    pytrace=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def fresh_artifacts():
    """Only this run's screenshots: pages named by ids would pile up run after run."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = system_chromium()
    with sync_playwright() as playwright:
        # Playwright passes --no-sandbox itself (chromium_sandbox=False): Chromium's
        # sandbox cannot start as root, as tests run in containers and CI.
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """The service with its build and training loops running, behind a threaded HTTP server.
    The tests run only models they upload or train (on the packaged all-MiniLM-L6-v2):
    no catalogue model is loaded."""
    data_dir = tmp_path_factory.mktemp("ui-browser") / "data"
    app = create_app({"DATA_DIR": str(data_dir), "BOOTSTRAP_KEY": False, "TESTING": True,
                      "BUILDER": True, "BUILD_POLL_S": 0.2, "TRAINER": True, "TRAINING_POLL_S": 0.1,
                      "PREDICTIONS": False})
    try:
        with LiveServer(app) as server:
            yield Live(app, server.url)
    finally:
        app.extensions["builder"].stop()
        app.extensions["dataset_parses"].stop()
        app.extensions["training"].stop()
        app.extensions["predictions"].stop()
        if "unloading_stale" in app.extensions:
            app.extensions["unloading_stale"].set()


@dataclass
class Live:
    app: object
    url: str

    def key(self, account: str) -> str:
        return new_key(self.app, account)

    def api(self):
        """A Flask test client of the same app, for preparing things through the JSON API."""
        return self.app.test_client()


@dataclass
class Tab:
    """A page in a browser context of its own, with what it asked the network for."""

    page: object
    base_url: str
    requests: list = field(default_factory=list)  # (resource type, URL) in order
    problems: list = field(default_factory=list)  # script errors and CSP violations

    def go(self, path: str):
        return self.page.goto(self.base_url + path)

    def sign_in(self, key: str) -> None:
        self.go("/ui/sign-in")
        self.page.get_by_label("API key", exact=True).fill(key)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        self.page.wait_for_load_state()

    def menu(self, name: str):
        """A link of the main menu, by its text."""
        return self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)

    def shot(self, name: str) -> str:
        """A full-page screenshot in test-artifacts/ui/<name>.png (and docs/ when asked)."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, f"{name}.png")
        self.page.screenshot(path=path, full_page=True)
        if os.environ.get(DOCS_ENV) == "1" and name in DOCS_SCREENSHOTS:
            docs = os.path.join(REPO, "docs")
            os.makedirs(docs, exist_ok=True)
            shutil.copyfile(path, os.path.join(docs, DOCS_SCREENSHOTS[name]))
        return path


@pytest.fixture
def open_tab(browser, live):
    """open_tab(viewport=None): a fresh browser context (no cookies) and a page in it.
    At the end, no page may have thrown a script error or broken the
    Content-Security-Policy (an inline script or style the pages must not have)."""
    contexts, tabs = [], []

    def _open(viewport: dict | None = None) -> Tab:
        options = {"viewport": viewport} if viewport else {}
        if viewport and viewport["width"] < 600:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        context = browser.new_context(**options)
        context.set_default_timeout(30_000)
        contexts.append(context)
        tab = Tab(context.new_page(), live.url)
        tab.page.on("request", lambda request: tab.requests.append((request.resource_type, request.url)))
        tab.page.on("pageerror", lambda error: tab.problems.append(f"script error: {error}"))
        tab.page.on("console", lambda message: _note_console(tab, message))
        # Every confirmation (delete, revoke, cancel) is accepted: the tests mean it.
        tab.page.on("dialog", lambda dialog: dialog.accept())
        tabs.append(tab)
        return tab

    yield _open
    for context in contexts:
        context.close()
    problems = [problem for tab in tabs for problem in tab.problems]
    assert not problems, problems


def _note_console(tab: Tab, message) -> None:
    if message.type == "error" and "Content Security Policy" in message.text:
        tab.problems.append(f"CSP violation: {message.text}")


@pytest.fixture
def signed_in(open_tab, live, request):
    """A tab signed in with a new key of an account named after the test's module
    (upload, training...): each module's things are its own."""
    account = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    tab = open_tab()
    tab.key = live.key(account)
    tab.account = account
    tab.sign_in(tab.key)
    assert tab.page.url.startswith(live.url + "/ui/models"), tab.page.url
    return tab


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="ui-browser-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
