"""docs/operations/settings.md's tables are generated from core/settings.py: the page
fails this test when it says something else than the code."""

import importlib.util
import os

from core.settings import FIELDS, env_name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "settings_reference.py")


def load_script():
    spec = importlib.util.spec_from_file_location("settings_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_page_is_generated_from_the_settings():
    script = load_script()
    with open(script.PAGE) as page:
        text = page.read()
    assert text == script.rendered(text), \
        "docs/operations/settings.md drifted from core/settings.py: run .venv/bin/python scripts/settings_reference.py"


def test_every_setting_has_a_row_with_its_default():
    script = load_script()
    rows = {line.split(" | ")[0].strip("| `").split("`")[0]: line for line in script.table() if line.startswith("| `")}
    assert set(rows) == {env_name(name) for name in FIELDS}
    assert "| 5 GiB |" in rows["INFER_UPLOAD_MAX_BYTES"] and "| `auto` |" in rows["INFER_DEVICE"]
    assert "| true |" in rows["INFER_BUILDER"] and "| 0.25 |" in rows["INFER_CLIENT_GONE_CHECK_S"]
