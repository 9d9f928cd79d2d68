"""The sandboxes of user models: the install of a version's requirements and the
worker that runs its code, as the settings describe them.

Each version runs under its own uid (as root; see sandbox/runner.py) and sees:
its venv at /venv (writable only while its requirements install), its files at
/model (read-only; the worker only), the scripts it runs under /opt/infer,
the Python and the service's installed packages (read-only), and a private
/tmp. Nothing of the data dir, the database, the secret, other models or the
service's code and environment.

Each install and worker is also one process tree in a control group of its own
(sandbox/cgroups.py): INFER_WORKER_MEMORY_MB bounds everything the tree holds
(not only each process's address space), INFER_SANDBOX_MAX_PROCESSES its
processes. A tree over its memory is stopped by the kernel, and the install or
the request fails saying so (`stopped_because`).
"""

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque

from core.settings import Settings
from sandbox import Bind, Job, Limits, Sandbox
from sandbox.egress import EgressProxy, parse_allowed

from .archive import tree_bytes
from .build_errors import INSTALL_WORKDIR
from .requirements_check import MAX_BYTES as REQUIREMENTS_MAX_BYTES
from .requirements_check import check_requirements

log = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_SCRIPT = os.path.join(HERE, "user_worker.py")
# The worker's standalone helper, mounted beside it (user_worker.py imports it).
FAILURE_REPORT_SCRIPT = os.path.join(HERE, "worker_failure_report.py")
INSTALL_SCRIPT = os.path.join(HERE, "install_inside.py")
INSTALL_NETWORKS = ("none", "index")
# What a build keeps of pip's output: enough for any real failure; a package
# that prints gigabytes cannot fill the service's memory.
LOG_KEEP_BYTES = 256 * 1024


class RequirementsFailed(Exception):
    """`pip_failed`: pip itself ended with an error (not stopped for time, memory or size)."""

    def __init__(self, message: str, log: str, pip_failed: bool = False):
        super().__init__(message)
        self.log = log
        self.pip_failed = pip_failed


def sandbox_from_config(config: Settings) -> Sandbox:
    allowed_env = tuple(n.strip() for n in config.sandbox_env_allow.split(",") if n.strip())
    forbidden = [n for n in allowed_env if n.startswith(("INFER_", "AWS_")) or n == "DATABASE_URL"]
    if forbidden:
        raise ValueError(f"INFER_SANDBOX_ENV_ALLOW must not name the service's own secrets: {', '.join(forbidden)}")
    return Sandbox(config.sandbox, env_allow=allowed_env, threads=max(1, config.torch_threads),
                   uid_base=config.sandbox_uid_base, uid_count=config.sandbox_uid_count,
                   cgroup=config.sandbox_cgroup, cgroup_parent=config.sandbox_cgroup_parent)


class ModelSandbox:
    def __init__(self, config: Settings, sandbox: Sandbox):
        self.config = config
        self.sandbox = sandbox
        if config.sandbox_install_network not in INSTALL_NETWORKS:
            raise ValueError(f"INFER_SANDBOX_INSTALL_NETWORK must be one of {', '.join(INSTALL_NETWORKS)}")
        self.find_links = [p.strip() for p in config.sandbox_pip_find_links.split(",") if p.strip()]

    def limits(self) -> Limits:
        config = self.config
        return Limits(
            memory_bytes=config.worker_memory_mb * 2**20,
            processes=config.sandbox_max_processes,
            cpu_seconds=config.sandbox_cpu_s,
            open_files=config.sandbox_max_open_files,
            file_bytes=config.sandbox_max_file_mb * 2**20,
            tmp_bytes=config.sandbox_tmp_mb * 2**20,
            nice=config.sandbox_nice,
        )

    # --- the model's worker ---------------------------------------------------------

    def grant(self, version_id: int, files_dir: str, venv_dir: str) -> None:
        """Let the version's sandbox user read its files and own its venv (which
        is mounted writable only while its requirements install)."""
        uid = self.sandbox.uid_for(version_id)
        self.sandbox.grant(files_dir, uid)
        self.sandbox.grant(venv_dir, uid, writable=True)

    def start_worker(self, version_id: int, files_dir: str, venv_dir: str, model_format: str) -> subprocess.Popen:
        job = Job(
            ["/venv/bin/python", "/opt/infer/user_worker.py", "/model", model_format],
            [Bind(venv_dir, "/venv"), Bind(files_dir, "/model"), Bind(WORKER_SCRIPT, "/opt/infer/user_worker.py"),
             Bind(FAILURE_REPORT_SCRIPT, "/opt/infer/worker_failure_report.py")],
            uid=self.sandbox.uid_for(version_id), limits=self.limits(), workdir="/model",
        )
        return self.sandbox.spawn(job, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

    def stop(self, process: subprocess.Popen) -> None:
        self.sandbox.kill(process)

    def stopped_because(self, process: subprocess.Popen) -> str | None:
        """Why the sandbox stopped an ended process tree, said of it; None for any other end."""
        return self._over_memory() if self.sandbox.over_memory(process) else None

    def _over_memory(self) -> str:
        return (f"went over its memory limit of {self.config.worker_memory_mb} MiB "
                "(INFER_WORKER_MEMORY_MB) and was stopped")

    def describe(self) -> dict:
        """What /readyz shows: the sandbox, and the limits every sandboxed tree gets."""
        described = self.sandbox.describe()
        described["resource_limits"].update(memory_mb=self.config.worker_memory_mb,
                                            max_processes=self.config.sandbox_max_processes)
        return described

    # --- the install of requirements.txt ----------------------------------------------

    def install(self, version_id: int, files_dir: str, venv_dir: str, scratch_dir: str) -> str:
        """pip install the version's requirements.txt into its venv, in a sandbox;
        pip's output. RequirementsRejected for a file that is more than a list of
        packages, RequirementsFailed when pip fails."""
        path = os.path.join(files_dir, "requirements.txt")
        text = ""
        if os.path.isfile(path):
            with open(path, "rb") as requirements_file:
                text = requirements_file.read(REQUIREMENTS_MAX_BYTES + 1).decode("utf-8", errors="replace")
        requirements = check_requirements(text)
        if not requirements:
            return "no requirements to install\n"
        uid = self.sandbox.uid_for(version_id)
        os.makedirs(scratch_dir, exist_ok=True)
        clean = os.path.join(scratch_dir, "requirements.txt")
        with open(clean, "w") as out:
            out.write("\n".join(requirements) + "\n")
        self.sandbox.grant(clean, uid)
        binds = [Bind(venv_dir, "/venv", writable=True), Bind(INSTALL_SCRIPT, "/opt/infer/install_inside.py"),
                 Bind(clean, "/install/requirements.txt")]
        pip = ["install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--prefer-binary",
               "--progress-bar", "off", "--no-warn-script-location", "-r", "/install/requirements.txt"]
        for index, folder in enumerate(self.find_links):
            binds.append(Bind(folder, f"/find-links/{index}"))
            pip += ["--find-links", f"/find-links/{index}"]
        inside = ["/venv/bin/python", "/opt/infer/install_inside.py"]
        proxy = None
        socket_dir = None
        if self.config.sandbox_install_network == "index":
            # Its own short folder (0700): a unix socket's path holds at most 107
            # bytes, which a data dir's path can take up on its own.
            socket_dir = tempfile.mkdtemp(prefix="infer-egress-")
            socket_path = os.path.join(socket_dir, "egress.sock")
            proxy = EgressProxy(socket_path, parse_allowed(self.config.sandbox_install_hosts))
            binds.append(Bind(socket_path, "/install/egress.sock"))
            inside += ["--proxy-socket", "/install/egress.sock"]
        else:
            pip.append("--no-index")
        job = Job([*inside, "--", *pip], binds, uid=uid, limits=self.limits(), workdir=INSTALL_WORKDIR)
        try:
            code, output = self._run(job, venv_dir)
        finally:
            if proxy:
                proxy.close()
            if socket_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
        if proxy and proxy.refused:
            output += ("\nThe install network refused: " + ", ".join(sorted(set(proxy.refused)))
                       + " (only INFER_SANDBOX_INSTALL_HOSTS are reachable).\n")
        if code == "timeout":
            raise RequirementsFailed(
                f"installing requirements.txt took over {self.config.build_requirements_timeout_s:g}s", output)
        if code == "memory":
            raise RequirementsFailed(f"installing requirements.txt {self._over_memory()}", output)
        if code == "too big":
            raise RequirementsFailed(
                f"the installed packages grew past {self.config.sandbox_install_max_mb} MiB "
                "(INFER_SANDBOX_INSTALL_MAX_MB)", output)
        if code != 0:
            raise RequirementsFailed("installing requirements.txt failed", output, pip_failed=True)
        return output

    def _run(self, job: Job, venv_dir: str) -> tuple[int | str, str]:
        """Run to the end, the timeout or the size limit; (exit code or why it
        was stopped: "timeout", "too big", "memory"; the end of its output)."""
        process = self.sandbox.spawn(job, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        kept: deque[bytes] = deque()
        reader = threading.Thread(target=_keep_tail, args=(process.stdout, kept), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.config.build_requirements_timeout_s
        size_limit = self.config.sandbox_install_max_mb * 2**20
        outcome: int | str | None = None
        while outcome is None:
            try:
                outcome = process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    outcome = "timeout"
                elif tree_bytes(venv_dir) > size_limit:
                    outcome = "too big"
        self.sandbox.kill(process)
        if outcome != 0 and self.sandbox.over_memory(process):  # pip, or what it ran, was stopped by the kernel
            outcome = "memory"
        reader.join(timeout=5)
        return outcome, b"".join(kept).decode("utf-8", errors="replace")


def _keep_tail(stream, kept: deque) -> None:
    size = 0
    while chunk := stream.read1(65536):
        kept.append(chunk)
        size += len(chunk)
        while size > LOG_KEEP_BYTES and len(kept) > 1:
            size -= len(kept.popleft())

