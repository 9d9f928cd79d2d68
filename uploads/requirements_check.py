"""requirements.txt takes package requirements and nothing else.

pip reads far more than package names from a requirements file: `-r FILE` and
`-c FILE` include other files (and print their lines in errors: `-r
/proc/self/environ` once put the service's secrets into a build message),
`-e`, paths and URLs install code from anywhere, and index options point pip
at another server. Each line must parse as a PEP 508 requirement without a
URL; the build installs from a clean file written from the parsed lines, never
from the user's file. Messages name the line and the kind of problem, and
never repeat the line's text.
"""

from packaging.requirements import InvalidRequirement, Requirement

MAX_BYTES = 64 * 1024
MAX_LINES = 500
# pip installs a "name" ending like this as a local archive file.
ARCHIVE_ENDINGS = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar.lz")


class RequirementsRejected(Exception):
    pass


def _logical_lines(text: str):
    """(first line number, content) with comments stripped and continuations joined."""
    pending, start = "", None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0]
        if line.lstrip().startswith("#"):
            line = ""
        if start is None:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        content = (pending + line).strip()
        if content:
            yield start, content
        pending, start = "", None
    if pending.strip():
        yield start, pending.strip()


def _kind(content: str) -> str:
    """What a line that is not a plain requirement is, in words."""
    option = content.split()[0].split("=")[0]
    described = {
        "-r": "includes another file (-r)", "--requirement": "includes another file (--requirement)",
        "-c": "includes a constraints file (-c)", "--constraint": "includes a constraints file (--constraint)",
        "-e": "installs an editable path or URL (-e)", "--editable": "installs an editable path or URL (--editable)",
        "-i": "sets the package index (-i)", "--index-url": "sets the package index (--index-url)",
        "--extra-index-url": "adds a package index (--extra-index-url)", "--no-index": "changes the index (--no-index)",
        "-f": "adds a place to find packages (-f)", "--find-links": "adds a place to find packages (--find-links)",
        "--trusted-host": "trusts a host (--trusted-host)",
    }
    if option in described:
        return described[option]
    if content.startswith("-"):
        return f"is a pip option ({option})"
    if "://" in content or content.startswith(("git+", "hg+", "svn+", "bzr+")):
        return "is a URL"
    if content.startswith((".", "/", "~", "\\")) or "/" in content.split(";")[0] or content.lower().endswith(ARCHIVE_ENDINGS):
        return "is a file path"
    return "is not a package requirement (name, extras, version specifiers, markers)"


def check_requirements(text: str) -> list[str]:
    """The requirements, one normalised line each; RequirementsRejected names
    the first bad line."""
    if len(text.encode()) > MAX_BYTES:
        raise RequirementsRejected(f"requirements.txt is over {MAX_BYTES // 1024} KiB.")
    requirements = []
    for number, content in _logical_lines(text):
        if len(requirements) >= MAX_LINES:
            raise RequirementsRejected(f"requirements.txt lists more than {MAX_LINES} packages.")
        problem = None
        if content.startswith("-"):
            problem = _kind(content)
        else:
            try:
                requirement = Requirement(content)
            except InvalidRequirement:
                problem = _kind(content)
            else:
                if requirement.url:
                    problem = "installs from a URL (name @ url)"
                elif requirement.name.lower().endswith(ARCHIVE_ENDINGS):
                    problem = "is a file path"
        if problem:
            raise RequirementsRejected(
                f"requirements.txt line {number} {problem}: only package requirements from the package index "
                "are allowed, one per line, such as `scikit-learn==1.5.2` or `numpy>=2`."
            )
        requirements.append(str(requirement))
    return requirements
