"""A control group for each sandboxed process tree: a memory limit that counts
everything the tree makes, and a limit on its processes.

Why the RLIMITs of runner.py are not enough: RLIMIT_AS caps one process's
address space, not the memory it makes outside it. A memfd filled with
write(), System V shared memory, files in its tmpfs, or a few hundred
processes each under the cap all hold host RAM that no process's size shows.
A control group's memory counter is charged for all of it (anonymous memory,
page cache, shmem: memfd, tmpfs, System V segments), and with swap counted too
(memory.memsw.* in v1, memory.swap.max 0 in v2) the tree cannot push its pages
out to swap instead. Over the limit, the kernel's OOM killer stops a process
of that tree and of no other; memory.oom_control (v1) or memory.events (v2)
counts it, which is how the service tells "went over its memory limit" from
any other death. pids.max bounds the tree's processes and threads together,
whatever uid they run as.

Where the groups go:
- cgroup v2 (one hierarchy, the memory and pids controllers available): in
  INFER_SANDBOX_CGROUP_PARENT, or by default in a folder "infer-sandbox" inside
  the service's own group. v2 forbids a group with processes of its own to
  hand controllers to child groups ("no internal processes"), so the service's
  processes first move to a leaf "service" of their group: what systemd asks of
  a unit with Delegate=yes, and what container entrypoints do.
- cgroup v1 (a hierarchy per controller): in the memory and the pids
  hierarchies, in INFER_SANDBOX_CGROUP_PARENT or a folder "infer-sandbox"
  inside the service's own group of each.

A tree joins its group before it can fork: its command starts as `sh -c`,
which writes its own pid to cgroup.procs and then execs the rest (JOIN_SCRIPT:
no Python runs between fork and exec, as the service is threaded). A group is
removed when its tree ends, after whatever is left in it was killed; at exit,
a process removes those it made; the groups of a service that died are
removed by the next one to start (their names carry the maker's pid and PID namespace).
"""

import atexit
import itertools
import logging
import os
import subprocess
import threading

from .cgroup_layouts import (FOLDER, CgroupUnavailable, Group, V1Layout, V2Layout, alive, host_folder, mounts,
                             own_groups, read)

log = logging.getLogger(__name__)

MODES = ("auto", "v2", "v1", "off")
PREFIX = "sandbox-"
# `sh -c JOIN_SCRIPT sh PROCS_FILE... -- COMMAND...`: join every group, then become the command.
JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
# Group names are sandbox-<pid namespace>-<pid>-<n>: n counts in the process, over
# every Sandbox it makes. The namespace matters: services in other PID namespaces
# (containers) may share a hierarchy, and their pids mean nothing here.
_numbers = itertools.count(1)
# Every group this process made and has not removed yet, whichever Sandbox made it
# (a Sandbox may be gone while its trees still run).
_live: set[Group] = set()
_live_lock = threading.Lock()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]") or "0"
    except OSError:
        return "0"


def _new_name() -> str:
    return f"{PREFIX}{_pid_namespace()}-{os.getpid()}-{next(_numbers)}"


def _owner(group: Group) -> int | None:
    """The pid of the service process that made the group, if it is of this PID namespace."""
    name = os.path.basename(group.memory_folder)
    parts = name[len(PREFIX):].split("-")
    if not name.startswith(PREFIX) or len(parts) != 3 or parts[0] != _pid_namespace() or not parts[1].isdigit():
        return None
    return int(parts[1])


class ControlGroups:
    """Which control groups this host gives sandboxes, decided once, and each tree's group.

    mode: "auto" (v2, else v1, else none), "v2", "v1" or "off". A mode named
    outright that cannot be had is a problem (user code does not run); "auto"
    then falls back to no cgroup at all, and the sandbox to what works without
    (runner.py: seccomp denies memfd and System V shared memory)."""

    def __init__(self, mode: str = "auto", parent: str = "", proc_self: str = "/proc/self"):
        if mode not in MODES:
            raise ValueError(f"INFER_SANDBOX_CGROUP must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.parent = parent.strip()
        self.proc_self = proc_self
        self.layout: V1Layout | V2Layout | None = None
        self.problem: str | None = None  # the named mode cannot be had
        self.why_none: str | None = None  # auto found none (or the mode is off)
        self._resolved = False
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        self.resolve()
        return self.layout is not None

    def resolve(self) -> None:
        with self._lock:
            if self._resolved:
                return
            self._resolved = True
            if self.mode == "off":
                self.why_none = "INFER_SANDBOX_CGROUP=off"
                return
            reasons = []
            for version in ("v2", "v1") if self.mode == "auto" else (self.mode,):
                try:
                    layout = self._layout(version)
                    layout.prepare()
                    self._probe(layout)
                except (CgroupUnavailable, OSError, subprocess.SubprocessError) as exc:
                    reasons.append(f"{version}: {exc}")
                    continue
                self.layout = layout
                self._sweep()
                log.info("sandboxed process trees get control groups (cgroup %s) in %s", version,
                         ", ".join(layout.parents))
                return
            if self.mode == "auto":
                self.why_none = "no writable control group: " + "; ".join(reasons)
                log.warning("sandboxes run without a control group (%s): memory outside each process's address "
                            "space is bounded by denying memfd and System V shared memory", self.why_none)
            else:
                self.problem = (f"INFER_SANDBOX_CGROUP={self.mode} cannot be had here ({'; '.join(reasons)}); "
                                "run the service as root or delegate a cgroup to it, or set INFER_SANDBOX_CGROUP=auto")

    def _layout(self, version: str) -> V1Layout | V2Layout:
        found = mounts(os.path.join(self.proc_self, "mountinfo"))
        own = own_groups(os.path.join(self.proc_self, "cgroup"))
        if version == "v2":
            mount = next((m for m in found if m[0] == "cgroup2"), None)
            if mount is None:
                raise CgroupUnavailable("no cgroup2 hierarchy is mounted")
            if self.parent:
                return V2Layout(os.path.join(mount[1], self.parent.strip("/")))
            service = host_folder(mount[1], mount[2], own.get("", "/"))
            available = read(os.path.join(service, "cgroup.controllers")).split()
            if not all(c in available for c in V2Layout.CONTROLLERS):
                raise CgroupUnavailable(f"the service's group {service} has no memory and pids controllers "
                                        f"(cgroup.controllers: {' '.join(available) or 'none'})")
            return V2Layout(os.path.join(service, FOLDER), service_group=service)
        folders = {}
        for controller in ("memory", "pids"):
            mount = next((m for m in found if m[0] == "cgroup" and controller in m[3]), None)
            if mount is not None:
                if self.parent:
                    folders[controller] = os.path.join(mount[1], self.parent.strip("/"))
                else:
                    folders[controller] = os.path.join(host_folder(mount[1], mount[2], own.get(controller, "/")),
                                                       FOLDER)
        if "memory" not in folders:
            raise CgroupUnavailable("no cgroup v1 memory hierarchy is mounted")
        return V1Layout(folders["memory"], folders.get("pids"))

    def _probe(self, layout) -> None:
        """Make a group, move a shell into it and remove it: what every spawn will do."""
        group = layout.create(_new_name(), 64 * 2**20, 8)
        try:
            done = subprocess.run(["/bin/sh", "-c", JOIN_SCRIPT, "sh", *group.procs_files, "--", "true"],
                                  capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise CgroupUnavailable(f"a process cannot join {group.memory_folder}: {done.stderr.strip()[:200]}")
        finally:
            group.remove()

    def _sweep(self) -> None:
        """Remove the groups that services no longer running left behind."""
        for parent in self.layout.parents:
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                group = self.layout.group(name)
                if (owner := _owner(group)) is not None and not alive(owner):
                    group.remove()

    def create(self, memory_bytes: int, max_processes: int) -> Group | None:
        """A new group with these limits for one tree; None without control groups."""
        if not self.active:
            return None
        with _live_lock:
            leftovers = [g for g in _live if g.failed_removal]
        for group in leftovers:  # groups whose killed processes had not left yet: another try
            retire(group)
        group = self.layout.create(_new_name(), memory_bytes, max_processes)
        with _live_lock:
            _live.add(group)
        return group

    @staticmethod
    def retire(group: Group) -> None:
        retire(group)

    def describe(self) -> dict:
        """What /readyz shows of the resource limits."""
        self.resolve()
        if self.layout is None:
            return {"enforcement": "none", "why": self.problem or self.why_none}
        swap = "no swap" if self.layout.swap_counted() else "swap NOT counted (swap accounting is off)"
        processes = ("processes and threads of the whole tree (pids.max)"
                     if self.layout.version == "v2" or self.layout.pids_parent else
                     "per sandbox uid only (RLIMIT_NPROC): no cgroup v1 pids hierarchy")
        return {
            "enforcement": f"cgroup {self.layout.version}",
            "memory": "the whole process tree: its processes, memfd, System V shared memory, its /tmp and "
                      f"/dev/shm; {swap}; over it the tree is stopped",
            "processes": processes,
        }


def retire(group: Group) -> None:
    """Remove a finished tree's group (tried again on the next create when it is not empty yet)."""
    group.failed_removal = not group.remove()
    if not group.failed_removal:
        with _live_lock:
            _live.discard(group)


@atexit.register
def remove_all() -> None:
    """Remove every group this process made (it is exiting: its trees go with it;
    a forked child leaves its parent's groups alone)."""
    with _live_lock:
        groups = [g for g in _live if _owner(g) == os.getpid()]
    for group in groups:
        retire(group)
