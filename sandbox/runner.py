"""Start a command in a sandbox: bubblewrap namespaces, its own user, a seccomp
filter, resource limits and an environment built from scratch.

Two ways to run bwrap, chosen by who the service runs as:

- As root (a container's default, or a host service started as root): bwrap
  runs privileged, without a user namespace, and the command is started by
  setpriv as the sandbox's own unprivileged uid (one per model version, from
  SANDBOX_UID_BASE), with every capability, the capability bounding set and
  supplementary groups dropped. The uid owns nothing on the host; the files a
  sandbox must read are given its group (see `grant`).
- As an ordinary user: bwrap makes a user namespace (the host must allow
  unprivileged user namespaces). The command keeps the service's uid on the
  host, mapped to itself, but sees none of the service's files: only what is
  bound in.

Either way: new mount, PID, IPC, UTS, cgroup and network namespaces (only a
loopback interface), no new privileges, no capabilities, the seccomp filter of
sandbox/seccomp.py, a size-limited private /tmp and /dev/shm, and RLIMITs on
address space, processes, CPU seconds, open files and file size (set by
prlimit so no Python code runs between fork and exec in this threaded
process). The command is its own session and process group; killing the
outer bwrap kills its PID namespace, and with it everything the command
started, even processes that left the group.

Each spawn's whole process tree also runs in a control group of its own
(sandbox/cgroups.py): a memory limit that counts what RLIMIT_AS does not
(memfd, System V shared memory, its tmpfs, many processes) and pids.max. Where
no control group can be written, the seccomp filter denies memfd_create and
System V shared memory instead, and the tmpfs keep their sizes. `kill` removes
the group; `over_memory` says whether the tree was stopped for its memory.

SANDBOX=none runs the command directly (same limits and environment, none of
the isolation): the documented opt-out for trusted single-user installs.
"""

import logging
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field

from . import seccomp, spawner
from .cgroups import JOIN_SCRIPT, ControlGroups, Group
from .system import system_binds

log = logging.getLogger(__name__)

KINDS = ("bwrap", "none")
# The sandbox's account name in its own /etc/passwd (some libraries look it up).
SANDBOX_USER = "model"


class SandboxUnavailable(Exception):
    """User code must not run: the configured isolation cannot be had here."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    processes: int
    cpu_seconds: int
    open_files: int
    file_bytes: int
    tmp_bytes: int
    nice: int = 10


@dataclass(frozen=True)
class Bind:
    source: str  # host path
    target: str  # where the sandbox sees it
    writable: bool = False


@dataclass
class Job:
    """One command to run sandboxed. Paths in `command`, `workdir` and `env` are
    the sandbox's (a Bind's target); with SANDBOX=none they are translated back."""

    command: list[str]
    binds: list[Bind]
    uid: int
    limits: Limits
    workdir: str = "/tmp"
    env: dict[str, str] = field(default_factory=dict)

    def host_path(self, value: str) -> str:
        for bind in sorted(self.binds, key=lambda b: len(b.target), reverse=True):
            if value == bind.target or value.startswith(bind.target.rstrip("/") + "/"):
                return bind.source + value[len(bind.target.rstrip("/")):]
        return value


class _Folders:
    """The folders above each mount point. bwrap would create them with the
    host's modes (/root is 0700), locking the sandbox's user out of what is
    mounted below; they are made 0755 first. Paths under an earlier mount
    (/usr/...) are already visible and need no mount of their own."""

    def __init__(self):
        self._made: set[str] = {"/"}
        self._mounts: list[str] = []

    def covered(self, path: str) -> bool:
        return any(path == m or path.startswith(m + "/") for m in self._mounts)

    def bound(self, path: str) -> None:
        self._mounts.append(path)

    def parents(self, path: str) -> list[str]:
        args = []
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder not in self._made and not self.covered(folder):
                args += ["--perms", "0755", "--dir", folder]
                self._made.add(folder)
        return args


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )


class Sandbox:
    def __init__(self, kind: str = "bwrap", env_allow: tuple[str, ...] = (), threads: int = 1,
                 uid_base: int = 200_000, uid_count: int = 100_000, cgroup: str = "auto", cgroup_parent: str = ""):
        if kind not in KINDS:
            raise ValueError(f"INFER_SANDBOX must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.env_allow = env_allow
        self.threads = threads
        self.uid_base = uid_base
        self.uid_count = max(1, uid_count)
        self.privileged = os.geteuid() == 0
        self._problem: str | None = None
        self._checked = False
        self.bwrap = _tool("bwrap")
        self.prlimit = _tool("prlimit")
        self.nice = _tool("nice")
        self.setpriv = _tool("setpriv")
        self.sh = _tool("sh")
        self.cgroups = ControlGroups(cgroup, cgroup_parent)
        self._trees: list[tuple[subprocess.Popen, Group]] = []
        self._trees_lock = threading.Lock()

    # --- is it usable -------------------------------------------------------------

    def problem(self) -> str | None:
        """Why user code cannot run here (None when it can). Checked once, by
        starting a sandbox, since a kernel or AppArmor policy can refuse namespaces."""
        if not self._checked:
            self._problem = self._find_problem()
            self._checked = True
            if self._problem:
                log.error("user code sandbox unavailable: %s", self._problem)
            elif self.kind == "none":
                log.warning("INFER_SANDBOX=none: uploaded models' code runs WITHOUT isolation")
        return self._problem

    def _find_problem(self) -> str | None:
        if not self.prlimit or not self.nice:
            return "prlimit (util-linux) and nice (coreutils) are needed to limit user code; install them."
        self.cgroups.resolve()
        if self.cgroups.problem:
            return self.cgroups.problem
        if self.cgroups.active and not self.sh:
            return "sh is needed to start sandboxes in their control groups; install a POSIX shell."
        if self.kind == "none":
            return None
        if not self.bwrap:
            return ("bubblewrap is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap), "
                    "or set INFER_SANDBOX=none on a trusted single-user install.")
        if self.privileged and not self.setpriv:
            return "setpriv (util-linux) is needed to start sandboxes under their own user; install util-linux."
        try:
            seccomp.build_filter()
        except seccomp.UnsupportedArchitecture as exc:
            return f"{exc}: uploaded code cannot be confined on this machine."
        probe = Job(["/bin/sh", "-c", "exit 0"], [], uid=self.uid_base,
                    limits=Limits(1 << 30, 64, 10, 64, 1 << 20, 1 << 20))
        try:
            process = self._start(probe, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                _, stderr = process.communicate(timeout=30)
            finally:
                self.kill(process)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not be started: {exc}"
        if process.returncode != 0:
            hint = ("the kernel refused a user namespace: allow unprivileged user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also an AppArmor profile for bwrap) "
                    "or run the service as root, which starts sandboxes under their own uids"
                    if not self.privileged else "check that the service may create namespaces and bring up "
                    "their loopback (a container needs --cap-add SYS_ADMIN --cap-add NET_ADMIN "
                    "--security-opt seccomp=unconfined, and --security-opt apparmor=unconfined where AppArmor runs)")
            return f"bwrap fails here ({stderr.strip()[:300]}): {hint}."
        return None

    def describe(self) -> dict:
        """What /readyz shows."""
        problem = self.problem()
        if self.kind == "none":
            user = "the service's own user: user code is NOT isolated (INFER_SANDBOX=none)"
        elif self.privileged:
            user = "one unprivileged uid per model version"
        else:
            user = "the service's uid inside a user namespace"
        return {"kind": self.kind, "available": problem is None, "user": user,
                "resource_limits": self._describe_limits(), **({"problem": problem} if problem else {})}

    def _describe_limits(self) -> dict:
        limits = self.cgroups.describe()
        if limits["enforcement"] == "none":
            limits["memory"] = "per process: its address space (RLIMIT_AS); " + (
                "memfd_create and System V shared memory are denied (seccomp); /tmp and /dev/shm have fixed sizes"
                if self.kind == "bwrap" else "memfd and shared memory NOT bounded (INFER_SANDBOX=none)")
            limits["processes"] = "per sandbox uid (RLIMIT_NPROC)"
        return limits

    def require(self) -> None:
        problem = self.problem()
        if problem:
            raise SandboxUnavailable(f"Uploaded code cannot run: no sandbox is available. {problem}")

    # --- per model version ----------------------------------------------------------

    def uid_for(self, version_id: int) -> int:
        """A version's own uid: its processes count alone against the process
        limit, and cannot signal or read another model's."""
        return self.uid_base + version_id % self.uid_count

    def grant(self, path: str, uid: int, writable: bool = False) -> None:
        """Let the sandbox user of `uid` read `path` (and write it when writable).

        Only as root do sandboxes run under a uid of their own. The data dir
        stays the service's (0700), so no other host user can reach these files
        either; a sandbox reaches them only through its bind mounts.
        """
        if not self.privileged or self.kind == "none":
            return
        walk = os.walk(path) if os.path.isdir(path) else [(path, [], [])]
        for directory, dirs, files in walk:
            for name in [None, *dirs, *files]:
                target = directory if name is None else os.path.join(directory, name)
                if os.path.islink(target):
                    continue
                if writable:
                    os.chown(target, uid, uid, follow_symlinks=False)
                    continue
                os.chown(target, -1, uid, follow_symlinks=False)
                owner = os.lstat(target).st_mode & 0o700
                os.chmod(target, owner | (owner >> 3) & 0o050 | 0o040)  # the group reads (and enters folders)

    # --- running -------------------------------------------------------------------

    def _outer_env(self) -> dict[str, str]:
        # bwrap and its reaper (PID 1 of the sandbox) keep the environment they
        # were started with: give them nothing of the service's.
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def inner_env(self, job: Job) -> dict[str, str]:
        """The command's environment, built from scratch: nothing of the
        service's except the names the operator allowed (INFER_SANDBOX_ENV_ALLOW)."""
        threads = str(self.threads)
        env = {
            "PATH": "/venv/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
            "USER": SANDBOX_USER, "LOGNAME": SANDBOX_USER, "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "HF_HOME": "/tmp/huggingface", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }
        env.update({name: os.environ[name] for name in self.env_allow if name in os.environ})
        env.update(job.env)
        if self.kind == "none":
            env = {name: job.host_path(value) if value.startswith("/") else value for name, value in env.items()}
            env["PATH"] = ":".join(job.host_path(p) for p in env["PATH"].split(":"))
        return env

    def _limits(self, limits: Limits) -> list[str]:
        return [
            self.prlimit, f"--as={limits.memory_bytes}", f"--nproc={limits.processes}",
            f"--cpu={limits.cpu_seconds}", f"--nofile={limits.open_files}", f"--fsize={limits.file_bytes}",
            "--core=0", "--", self.nice, "-n", str(limits.nice),
        ]

    def command(self, job: Job) -> tuple[list[str], list[bytes]]:
        """The full command line, and the data for the file descriptors it names
        (written to pipes by `spawn`; named here as {fd0}, {fd1}...)."""
        if self.kind == "none":
            return [*self._limits(job.limits), *(job.host_path(a) for a in job.command)], []
        # Without a control group to count them, memory outside the address space is refused outright.
        datas = [seccomp.build_filter(deny_shared_memory=not self.cgroups.active), self._passwd(job.uid),
                 self._group(job.uid)]
        args = [*self._limits(job.limits), self.bwrap]
        if self.privileged:
            # No user namespace: uid 0 here is real root, kept only long
            # enough for setpriv to drop to the sandbox's uid.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
        else:
            args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        args += [
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
        ]
        for name, value in self.inner_env(job).items():
            args += ["--setenv", name, value]
        # The scratch mounts first: a service installed under /tmp must stay
        # visible, mounted over the sandbox's own /tmp rather than hidden by it.
        args += ["--proc", "/proc", "--dev", "/dev"]
        for scratch in ("/tmp", "/dev/shm"):  # in RAM, so each has a size
            args += ["--perms", "1777", "--size", str(job.limits.tmp_bytes), "--tmpfs", scratch]
        folders = _Folders()
        for kind, source, target in system_binds():
            if kind == "symlink":
                args += ["--symlink", source, target]
            elif not folders.covered(target):
                args += folders.parents(target) + ["--ro-bind-try" if kind == "ro-try" else "--ro-bind", source, target]
                folders.bound(target)
        args += ["--ro-bind-data", "{fd1}", "/etc/passwd", "--ro-bind-data", "{fd2}", "/etc/group"]
        for bind in job.binds:
            args += folders.parents(bind.target) + ["--bind" if bind.writable else "--ro-bind", bind.source, bind.target]
        args += ["--chdir", job.workdir, "--seccomp", "{fd0}", "--"]
        if self.privileged:
            args += [self.setpriv, f"--reuid={job.uid}", f"--regid={job.uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--"]
        return args + job.command, datas

    def spawn(self, job: Job, **popen_kwargs) -> subprocess.Popen:
        """Start the job; stdin/stdout/stderr as in subprocess.Popen."""
        self.require()
        return self._start(job, **popen_kwargs)

    def _start(self, job: Job, **popen_kwargs) -> subprocess.Popen:
        args, datas = self.command(job)
        self._retire_finished()
        # pids.max counts bwrap's own two processes too: per tree, the group's
        # limit binds before RLIMIT_NPROC (which counts the sandbox uid's, host-wide).
        group = self.cgroups.create(job.limits.memory_bytes, job.limits.processes)
        if group is not None:  # the tree joins its group before anything in it can fork
            args = [self.sh, "-c", JOIN_SCRIPT, "sh", *group.procs_files, "--", *args]
        read_ends = []
        try:
            for index, data in enumerate(datas):
                read_end, write_end = os.pipe()
                read_ends.append(read_end)
                with os.fdopen(write_end, "wb") as pipe:  # small enough for the pipe's buffer
                    pipe.write(data)
                args = [str(read_end) if a == f"{{fd{index}}}" else a for a in args]
            cwd = job.host_path(job.workdir) if self.kind == "none" else "/"
            env = self.inner_env(job) if self.kind == "none" else self._outer_env()
            # From the spawner's thread: --die-with-parent watches the thread that forks bwrap.
            process = spawner.spawn(lambda: subprocess.Popen(args, pass_fds=read_ends, start_new_session=True,
                                                             cwd=cwd, env=env, **popen_kwargs))
        except BaseException:
            if group is not None:
                self.cgroups.retire(group)
            raise
        finally:
            for fd in read_ends:
                os.close(fd)
        if group is not None:
            process.sandbox_group = group
            process.sandbox_cgroups = self.cgroups
            with self._trees_lock:
                self._trees.append((process, group))
        return process

    def _retire_finished(self) -> None:
        """Remove the groups of trees that ended without `kill` (a caller that only waited)."""
        with self._trees_lock:
            finished = [(p, g) for p, g in self._trees if g.removed or p.poll() is not None]
            self._trees = [tree for tree in self._trees if tree not in finished]
        for _process, group in finished:
            self.cgroups.retire(group)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """Kill the job and everything it started: its process group, with bwrap
        its whole PID namespace (which dies with the outer bwrap), and whatever
        is in its control group; then remove the group."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.kill()
        except ProcessLookupError:
            pass
        group = getattr(process, "sandbox_group", None)
        if group is not None:
            group.kill()
        process.wait()
        if group is not None:
            process.sandbox_cgroups.retire(group)

    @staticmethod
    def over_memory(process: subprocess.Popen) -> bool:
        """Whether the kernel stopped a process of the job's tree for going over
        its memory limit (asked after the job ended, before or after `kill`)."""
        group = getattr(process, "sandbox_group", None)
        return group is not None and group.oom_kills() > 0

    def _passwd(self, uid: int) -> bytes:
        if not self.privileged:
            uid = os.getuid()
        return (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                f"{SANDBOX_USER}:x:{uid}:{uid}:sandboxed model:/tmp:/usr/sbin/nologin\n").encode()

    def _group(self, uid: int) -> bytes:
        gid = uid if self.privileged else os.getgid()
        return f"root:x:0:\n{SANDBOX_USER}:x:{gid}:\n".encode()

