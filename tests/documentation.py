"""The documentation's files, in reading order: README.md, then the pages of docs/ in
mkdocs.yml's nav order (the site's order, and the order the walk-throughs build on one
another: tests/test_readme.py runs their marked shell blocks in it)."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MKDOCS_YML = os.path.join(ROOT, "mkdocs.yml")
DOCS = os.path.join(ROOT, "docs")


def _pages(nav) -> list[str]:
    """The Markdown files a nav (a list of pages, {title: page} or {title: [...]}) names, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _pages(value)]
    return [page for entry in nav for page in _pages(entry)]


def nav_pages() -> list[str]:
    """docs/-relative paths of the site's pages, in nav order."""
    with open(MKDOCS_YML) as f:
        return _pages(yaml.safe_load(f)["nav"])


def markdown_files_in_docs() -> set[str]:
    return {os.path.relpath(os.path.join(folder, name), DOCS)
            for folder, _folders, names in os.walk(DOCS) for name in names if name.endswith(".md")}


def documentation_files() -> list[str]:
    """README.md, then every page of the site in nav order (absolute paths)."""
    return [README] + [os.path.join(DOCS, page) for page in nav_pages()]


def read(path: str) -> str:
    with open(path) as f:
        return f.read()
