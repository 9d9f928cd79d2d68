"""The documentation site (mkdocs.yml, docs/) builds with `mkdocs build --strict`, and
that build fails on what makes a site hard to navigate: a broken link, an anchor that
no page has, a page left out of the nav. The API reference page is openapi.yaml's,
and the README's own links reach files that exist."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

from ..documentation import DOCS, MKDOCS_YML, README, ROOT, markdown_files_in_docs, nav_pages, read

API_REFERENCE_SCRIPT = os.path.join(ROOT, "scripts", "api_reference.py")


def mkdocs_build(config_file: str, site_dir: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", config_file,
                           "--site-dir", site_dir], capture_output=True, text=True, timeout=300, env=environment)


def test_the_site_builds_in_strict_mode(tmp_path):
    built = mkdocs_build(MKDOCS_YML, str(tmp_path / "site"))
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    for page in nav_pages():
        html = "index.html" if page == "index.md" else os.path.join(page[:-len(".md")], "index.html")
        assert (tmp_path / "site" / html).is_file(), page
    # The dashboard page's screenshots (the README shows one of them too).
    assert (tmp_path / "site" / "ui-models.png").is_file() and (tmp_path / "site" / "ui-training-run.png").is_file()


def test_every_page_in_docs_is_in_the_nav_once():
    assert sorted(nav_pages()) == sorted(markdown_files_in_docs())
    assert len(nav_pages()) == len(set(nav_pages()))


def test_a_broken_link_a_missing_anchor_or_a_page_left_out_of_the_nav_fails_the_build(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(MKDOCS_YML, tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "security.md", "a") as f:
        f.write("\nSee [the missing page](missing.md) and [no such section](operations/docker.md#no-such-section).\n")
    (tmp_path / "docs" / "forgotten.md").write_text("# Not in the nav\n")
    built = mkdocs_build(str(tmp_path / "mkdocs.yml"), str(tmp_path / "site"))
    assert built.returncode != 0
    assert "'missing.md'" in built.stderr, built.stderr
    assert "'#no-such-section'" in built.stderr, built.stderr
    assert "forgotten.md" in built.stderr, built.stderr


def load_api_reference_script():
    spec = importlib.util.spec_from_file_location("api_reference", API_REFERENCE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_page_is_generated_from_openapi_yaml():
    api_reference = load_api_reference_script()
    assert read(api_reference.PAGE) == api_reference.rendered(), \
        "docs/reference/api.md drifted from openapi.yaml: run .venv/bin/python scripts/api_reference.py"


def test_the_api_reference_names_every_operation_and_schema_of_openapi_yaml():
    api_reference = load_api_reference_script()
    import yaml
    spec = yaml.safe_load(read(api_reference.OPENAPI))
    page = read(api_reference.PAGE)
    for path, item in spec["paths"].items():
        for method in api_reference.METHODS:
            if method in item:
                assert f"### `{method.upper()} {path}`" in page
    for name in spec["components"]["schemas"]:
        assert f"{{ #schema-{name.lower()} }}" in page


def test_the_readme_is_short_and_its_links_reach_files_that_exist():
    text = read(README)
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [target for target in targets if not re.match(r"[a-z]+://", target)]
    assert "docs/index.md" in local and "docs/ui-models.png" in local
    missing = [target for target in local if not os.path.isfile(os.path.join(ROOT, target.split("#")[0]))]
    assert not missing, missing
    assert not [target for target in local if "#" in target], "the README links pages, not sections"
