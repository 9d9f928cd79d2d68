"""Write the settings table of docs/operations/settings.md from core/settings.py.

    .venv/bin/python scripts/settings_reference.py          # rewrites the table in the page
    .venv/bin/python scripts/settings_reference.py --check  # exit 1 when the page differs

Settings (core/settings.py) is the source: each field's type, default and doc. The
page's prose stays as written; only the part between the two markers is generated,
so that the page cannot say something else than the code: tests/docs/test_site.py
fails when it drifts.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from core.settings import FIELDS, env_name  # noqa: E402

PAGE = os.path.join(ROOT, "docs", "operations", "settings.md")
BEGIN = "<!-- settings table: generated from core/settings.py by scripts/settings_reference.py -->"
END = "<!-- end of the settings table -->"
SIZES = ((1024**3, "GiB"), (1024**2, "MiB"))


def default_text(item) -> str:
    """The default as an operator writes it: true, 5 GiB, `auto`, empty."""
    if item.metadata["shown"]:
        return item.metadata["shown"]
    value = item.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    if isinstance(value, int) and item.name.endswith("_bytes"):
        for size, unit in SIZES:
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table() -> list[str]:
    lines = []
    for item in FIELDS.values():
        if item.metadata["section"]:
            lines += ["" if lines else None, f"### {item.metadata['section']}", "",
                      "| variable | type | default | meaning |", "|---|---|---|---|"]
        variable = f"`{env_name(item.name)}`" + (" or `DATABASE_URL`" if item.name == "database_url" else "")
        if item.metadata["secret"]:  # also from a mounted secret's file (core/settings.py _with_secret_file)
            variable += f" (or `{env_name(item.name)}_FILE`)"
        lines.append(f"| {variable} | {item.type.__name__} | {cell(default_text(item))} | "
                     f"{cell(item.metadata['doc'])} |")
    return [line for line in lines if line is not None]


def rendered(page: str) -> str:
    """The page with its table regenerated between the markers."""
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    return page[:start] + "\n\n" + "\n".join(table()) + "\n\n" + page[end:]


def main(arguments: list[str]) -> int:
    with open(PAGE) as file:
        page = file.read()
    if "--check" in arguments:
        if rendered(page) != page:
            print(f"{PAGE} differs from core/settings.py: run scripts/settings_reference.py", file=sys.stderr)
            return 1
        return 0
    with open(PAGE, "w") as file:
        file.write(rendered(page))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
