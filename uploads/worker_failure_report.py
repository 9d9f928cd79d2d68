"""What a user model's worker says when the model's code fails: a structured
report in the model author's own terms, made where their files are known.

Standalone (only the standard library; no imports from the service): it runs
inside the model's sandbox next to user_worker.py. A report names the step that
failed (importing their module, loading, answering), the exception's type and
message, and the frame in *their* files nearest the error, with paths relative
to the archive's root. Frames of the worker itself and of Python's import
machinery are left out; library frames keep only the library's own path. The
service sanitises what it receives again (uploads/build_errors.py): the model's
code runs in this process and could write anything.
"""

import os
import sysconfig
import traceback

# Enough of a message to act on; a model that raises megabytes is cut.
MESSAGE_CHARS = 500
# The traceback of the model's own failure keeps its last frames.
FRAMES_KEPT = 30

# What each step is called in the author's terms (the step, then its verb).
STEPS = {
    "import": "Importing {entry} failed",
    "load": "load_model() failed",
    "unpickle": "Unpickling model.bin failed",
    "call": "call_model() failed on the {task} input",
    "pickle-call": "The pickled model failed on the {task} input",
}


class ModelCodeError(Exception):
    """The model's files break the format's contract (a missing function): said as is."""


def _library_roots() -> list[str]:
    roots = {sysconfig.get_paths().get("stdlib", ""), sysconfig.get_paths().get("platstdlib", "")}
    return sorted((os.path.realpath(r) for r in roots if r), key=len, reverse=True)


def _library_path(path: str) -> str | None:
    """A library file's path as the library names it (`json/decoder.py`), None for other files."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    real = os.path.realpath(path)
    for root in _library_roots():
        if real.startswith(root + os.sep):
            return real[len(root) + 1:]
    return None


def relative(path: str, model_dir: str) -> str | None:
    """`path` relative to the model's folder, None when it lies outside."""
    root = model_dir.rstrip("/")
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    real_root = os.path.realpath(root)
    real = os.path.realpath(path) if os.path.isabs(path) else path
    if real.startswith(real_root + "/"):
        return real[len(real_root) + 1:]
    return None


def in_their_terms(text: str, model_dir: str) -> str:
    """Paths under the model's folder written relative to it (an exception's
    message often names a file: "No such file or directory: '/model/w.bin'")."""
    root = model_dir.rstrip("/")
    for prefix in {root, os.path.realpath(root)}:
        text = text.replace(prefix + "/", "")
    return text


def frames(tb, model_dir: str) -> list[dict]:
    """The traceback's frames that mean something to the author, oldest first:
    theirs ({"file", "line", "function", "code"}) and libraries' ({"library", ...})."""
    kept = []
    for frame in traceback.extract_tb(tb):
        mine = relative(frame.filename, model_dir)
        if mine is not None:
            kept.append({"file": mine, "line": frame.lineno, "function": frame.name, "code": (frame.line or "")[:200]})
            continue
        library = _library_path(frame.filename) if os.path.isabs(frame.filename) else None
        if library is not None:
            kept.append({"library": library, "line": frame.lineno, "function": frame.name})
        # Anything else is the worker's own code or Python's import machinery: not the author's concern.
    return kept[-FRAMES_KEPT:]


def _syntax_frame(exc: SyntaxError, model_dir: str) -> dict | None:
    mine = relative(exc.filename or "", model_dir)
    if mine is None or not exc.lineno:
        return None
    return {"file": mine, "line": exc.lineno, "function": "<module>", "code": (exc.text or "").strip()[:200],
            "column": exc.offset}


def _hint(exc: BaseException, model_dir: str) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if not any(os.path.exists(os.path.join(model_dir, name)) for name in (top, top + ".py")):
            return " (add it to requirements.txt)"
    if isinstance(exc, FileNotFoundError):
        return " (is the file in the archive? your code runs with the archive's root as its folder)"
    if isinstance(exc, MemoryError):
        return " (the model's memory is limited: the service's INFER_WORKER_MEMORY_MB)"
    return ""


def report(exc: BaseException, model_dir: str, step: str, entry: str = "", task: str = "") -> dict:
    """The structured report of `exc` raised by the model's code during `step`
    (a key of STEPS), with `sentence`: one sentence the author can act on."""
    kind = type(exc).__name__
    if isinstance(exc, SyntaxError) and not isinstance(exc, ModelCodeError):
        message = in_their_terms(str(exc.msg), model_dir)
        found = _syntax_frame(exc, model_dir)
        stack = [*frames(exc.__traceback__, model_dir), *([found] if found else [])]
    else:
        message = in_their_terms(str(exc), model_dir)
        stack = frames(exc.__traceback__, model_dir)
    message = message[:MESSAGE_CHARS] + ("..." if len(message) > MESSAGE_CHARS else "")
    theirs = [frame for frame in stack if "file" in frame]
    at = theirs[-1] if theirs else None
    lead = STEPS[step].format(entry=entry, task=task)
    if isinstance(exc, ModelCodeError):
        sentence = message
    else:
        where = ""
        if at is not None:
            where = f" at {at['file']} line {at['line']}"
            if at["function"] != "<module>":
                where += f" (in {at['function']})"
        said = f"{kind}: {message}" if message else kind
        sentence = f"{lead}{where}: {said}{_hint(exc, model_dir)}"
    return {"step": step, "type": kind, "message": message, "sentence": sentence.rstrip(".") + ".",
            "file": at["file"] if at else None, "line": at["line"] if at else None, "frames": stack,
            "traceback": message if isinstance(exc, ModelCodeError) else render(stack, kind, message)}


def render(stack: list[dict], kind: str, message: str) -> str:
    """A traceback of the author's frames (libraries' shortened), no worker frames, no `^^^` markers."""
    lines = ["Traceback (most recent call last; your files, with libraries' frames shortened):"]
    for frame in stack:
        if "file" in frame:
            lines.append(f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
            if frame.get("code"):
                lines.append(f"    {frame['code'].strip()}")
            if frame.get("column"):
                lines.append(f"    (column {frame['column']})")
        else:
            lines.append(f'  [library] {frame["library"]}, line {frame["line"]}, in {frame["function"]}')
    lines.append(f"{kind}: {message}" if message else kind)
    return "\n".join(lines)
