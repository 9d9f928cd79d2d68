"""What a model's author is told when its build (or a call of its code) fails:
a sentence they can act on, and a build log with their frames and output, in
their own paths, and nothing of the service's.

The worker reports its model's failures itself, where the author's files are
known (uploads/worker_failure_report.py); pip's output is summarised here. All
text that reaches the account (the message, the log, a prediction's error)
then goes through `Scrubber`, the second line of defence: a model can print
anything, so the service rewrites any path it recognises (the archive's to
archive-relative ones, libraries' to the library's own, its own code, data dir
and environment to "[service]"), folds frames of its own code into one line,
drops Python's `^^^^` markers and its internal model keys ("user-8").
"""

import os
import re
import sys
import sysconfig


class BuildFailed(Exception):
    """The upload cannot become a model; the message tells its owner what to fix."""


SERVICE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the sandbox shows the model's files, the worker's scripts and the model's venv.
SANDBOX_MODEL_DIR = "/model"
SANDBOX_SCRIPTS_DIR = "/opt/infer"
SANDBOX_VENV_DIR = "/venv"
SERVICE_FRAMES = "  [service frames omitted]"
SERVICE_PATH = "[service]"
SYSTEM_PREFIXES = ("", "/usr", "/usr/local")
# A sentence quoted from pip or from the model is cut here.
QUOTED_CHARS = 600

# An absolute path; a segment does not end in a dot, so a sentence's full stop stays outside.
_PATH = re.compile(r"(?<![\w/.~-])(?:/[\w.@+~%=-]*[\w@+~%=-])+/?")
# The folder the install runs pip in (uploads/model_sandbox.py). pip prints a path below its working folder
# relative to it: a service installed under /tmp shows its packages as "./<where>/.venv/lib/.../site-packages".
INSTALL_WORKDIR = "/tmp"
# A path relative to the current folder.
_RELATIVE_PATH = re.compile(r"(?<![\w/.~-])\.\.?(?:/[\w.@+~%=-]*[\w@+~%=-])+/?")
_FRAME = re.compile(r'^(\s*)File "(.*?)", line (\d+)(?:, in (.*))?$')
_MARKERS = re.compile(r"^\s*[\^~]+\s*$")
_MODEL_KEY = re.compile(r"\b(Model )?user-\d+\b")
_PACKAGE_FOLDERS = ("/site-packages/", "/dist-packages/")


def _stdlib_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = {paths.get("stdlib"), paths.get("platstdlib")}
    roots |= {os.path.realpath(root) for root in roots if root}
    return sorted((root for root in roots if root), key=len, reverse=True)


def _under(path: str, root: str) -> str | None:
    """`path` relative to `root` ("" for the root itself), None outside it."""
    root = root.rstrip("/")
    if path == root:
        return ""
    if root and path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None


class Scrubber:
    """Rewrites text for a model's account. `files_dir` and `venv_dir` are the
    version's host folders when known; `data_dir` the service's data dir."""

    def __init__(self, files_dir: str | None = None, venv_dir: str | None = None, data_dir: str | None = None):
        self.user_roots = [SANDBOX_MODEL_DIR] + ([files_dir] if files_dir else [])
        self.user_roots += [os.path.realpath(root) for root in self.user_roots]
        self.venv_roots = [venv_dir, os.path.realpath(venv_dir)] if venv_dir else []
        # The service's environment, unless it is the system's own (a container's /usr/local):
        # the sandbox shows /usr itself.
        prefixes = [p for p in {sys.prefix, sys.exec_prefix} if p.rstrip("/") not in SYSTEM_PREFIXES]
        service = [SERVICE_ROOT, SANDBOX_SCRIPTS_DIR, *prefixes, *([data_dir] if data_dir else [])]
        service += [os.path.realpath(root) for root in service]
        self.service_roots = sorted({root.rstrip("/") for root in service if root.rstrip("/")}, key=len,
                                    reverse=True)
        self.stdlib_roots = _stdlib_roots()

    # --- single paths -----------------------------------------------------------------

    def _theirs(self, path: str) -> str | None:
        for root in self.user_roots:
            rest = _under(path, root)
            if rest is not None:
                return rest or "."
        return None

    def _library(self, path: str) -> str | None:
        for marker in _PACKAGE_FOLDERS:
            if marker in path:
                return path.rsplit(marker, 1)[1]
            if path.endswith(marker.rstrip("/")):
                return "[installed packages]"
        for root in self.stdlib_roots:
            rest = _under(path, root)
            if rest is not None:
                return rest or "[Python's standard library]"
        return None

    def path(self, path: str) -> str:
        """One absolute path as the account may see it."""
        for rewrite in (self._theirs, self._library):
            shown = rewrite(path)
            if shown is not None:
                return shown
        for root in self.venv_roots:
            rest = _under(path, root)
            if rest is not None:
                return SANDBOX_VENV_DIR + ("/" + rest if rest else "")
        if any(_under(path, root) is not None for root in self.service_roots):
            return SERVICE_PATH
        return path  # the sandbox's own /tmp, /usr...: the model sees those itself

    def _paths(self, text: str) -> str:
        text = _RELATIVE_PATH.sub(lambda match: self._relative_path(match.group(0)), text)
        return _PATH.sub(lambda match: self.path(match.group(0)), text)

    def _relative_path(self, path: str) -> str:
        """A relative path, read as pip's (below INSTALL_WORKDIR): rewritten as its absolute path would
        be when that is a library's or the service's; left as it was written otherwise (a model's own)."""
        absolute = os.path.normpath(os.path.join(INSTALL_WORKDIR, path))
        shown = self.path(absolute)
        return path if shown == absolute else shown

    # --- text ---------------------------------------------------------------------------

    def line(self, text: str) -> str:
        """A message: paths rewritten, internal model keys replaced."""
        text = self._paths(text)
        return _MODEL_KEY.sub(lambda match: "The model" if match.group(1) else "the model", text)

    def text(self, text: str) -> str:
        """A log: as `line`, and traceback frames outside the author's files folded."""
        out: list[str] = []
        skipping_below = None  # the indent of a dropped frame: its source lines go with it
        for raw in text.splitlines():
            if _MARKERS.match(raw):
                continue
            frame = _FRAME.match(raw)
            if frame:
                indent, path, number, function = frame.groups()
                shown = self._theirs(path) if path.startswith("/") else (path if not path.startswith("<") else None)
                library = self._library(path) if path.startswith("/") and shown is None else None
                if shown is not None:
                    out.append(self.line(f'{indent}File "{shown}", line {number}, in {function or "?"}'))
                    skipping_below = None
                elif library is not None:
                    out.append(self.line(f"{indent}[library] {library}, line {number}, in {function or '?'}"))
                    skipping_below = len(indent)
                else:
                    if not out or out[-1] != SERVICE_FRAMES:
                        out.append(SERVICE_FRAMES)
                    skipping_below = len(indent)
                continue
            if skipping_below is not None:
                if raw.strip() and len(raw) - len(raw.lstrip()) > skipping_below:
                    continue  # a dropped frame's source line
                skipping_below = None
            out.append(self.line(raw))
        return "\n".join(out)


def quoted(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "..."


def pip_errors(output: str) -> str:
    """What pip said went wrong, in a line: its last ERROR lines (or the last line it wrote)."""
    errors: list[str] = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("ERROR: "):
            error = line[len("ERROR: "):]
            if error not in errors:
                errors.append(error)
    if errors:
        return quoted("; ".join(errors[-2:]))
    lines = [line for line in output.splitlines() if line.strip()]
    return quoted(lines[-1]) if lines else ""


def requirements_message(reason: str, output: str, failed_install: bool) -> str:
    """A failed install in a sentence or two: why it stopped and, when pip
    failed, what pip said (its whole output is in the build log)."""
    if failed_install:
        said = pip_errors(output)
        detail = f": {said.rstrip('.')}" if said else ""
        return (f"{reason}{detail}. Check each line's package name and version; pip's whole output is in the "
                "build log.")
    return f"{reason}; pip's output is in the build log."


def worker_message(exc) -> str:
    """A build's message for a failure of the model's worker (uploads/worker_client.py's errors)."""
    failure = getattr(exc, "failure", None)
    if failure and failure.get("sentence"):
        # A failure in their files has a traceback worth reading; a broken contract is said whole.
        return failure["sentence"] + (" The build log has the traceback." if failure.get("file") else "")
    return getattr(exc, "summary", None) or exc.message


def worker_log(exc) -> str:
    """What the build log adds for a failure of the model's worker: the author's traceback."""
    failure = getattr(exc, "failure", None)
    if failure and failure.get("traceback"):
        return failure["traceback"]
    return getattr(exc, "summary", None) or exc.message


def service_error_message(version_id: int) -> str:
    return (f"The build stopped on an error in the service, not in your files (model version id {version_id}): "
            "upload again, and if it happens again tell the operator, whose log has the details.")
