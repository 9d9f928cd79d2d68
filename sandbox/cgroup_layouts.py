"""The control groups themselves, as files: where the hierarchies are mounted,
one process tree's group (its limits, its OOM kill count, killing what is in
it, removing it), and the two layouts that make groups, cgroup v1 and v2.
sandbox/cgroups.py chooses between them and says why (see its docstring).
"""

import logging
import os
import re
import signal
import threading
import time

log = logging.getLogger(__name__)

FOLDER = "infer-sandbox"
SERVICE_LEAF = "service"
# How long a removal waits for the killed processes to leave their group.
REMOVE_WAIT_S = 5.0


class CgroupUnavailable(Exception):
    """No control group of this version can be made here (the message says why)."""


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _count(path: str, key: str) -> int:
    """The value of `key` in a flat keyed file (memory.events, pids.events...); 0 when absent."""
    try:
        text = read(path)
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _pids(folder: str) -> list[int]:
    try:
        return [int(line) for line in read(os.path.join(folder, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, its root within the hierarchy, super options) of every cgroup mount."""
    found = []
    try:
        lines = read(mountinfo).splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        found.append((tail[0], point, fields[3], set(tail[2].split(","))))
    return found


def own_groups(cgroup_file: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's group in each hierarchy: "" for v2, else each v1 controller's name."""
    groups = {}
    try:
        lines = read(cgroup_file).splitlines()
    except OSError:
        return groups
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            groups[name] = path
    return groups


def host_folder(mount_point: str, mount_root: str, group: str) -> str:
    """Where a group (as /proc/self/cgroup names it) is under a mount of its hierarchy."""
    if mount_root != "/" and (group == mount_root or group.startswith(mount_root + "/")):
        group = group[len(mount_root):]
    return os.path.join(mount_point, group.lstrip("/")).rstrip("/")


class Group:
    """One process tree's control group: a folder in each hierarchy (one in v2)."""

    def __init__(self, version: str, memory_folder: str, pids_folder: str | None, memory_bytes: int = 0,
                 max_processes: int = 0):
        self.version = version
        self.memory_folder = memory_folder
        self.pids_folder = pids_folder  # the same folder in v2; None for v1 without a pids hierarchy
        self.memory_bytes = memory_bytes
        self.max_processes = max_processes
        self.removed = False
        self.failed_removal = False  # its processes had not left when it was to be removed
        self._final_oom_kills: int | None = None
        self._lock = threading.Lock()

    @property
    def folders(self) -> list[str]:
        return list(dict.fromkeys(f for f in (self.memory_folder, self.pids_folder) if f))

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(folder, "cgroup.procs") for folder in self.folders]

    def oom_kills(self) -> int:
        """Processes of the tree the kernel killed for going over the memory limit."""
        if self._final_oom_kills is not None:
            return self._final_oom_kills
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        return _count(os.path.join(self.memory_folder, name), "oom_kill")

    def forks_refused(self) -> int:
        """Forks that pids.max refused."""
        return _count(os.path.join(self.pids_folder, "pids.events"), "max") if self.pids_folder else 0

    def processes(self) -> list[int]:
        return sorted({pid for folder in self.folders for pid in _pids(folder)})

    def kill(self) -> None:
        """SIGKILL everything in the group, round after round: a process that
        forked meanwhile is in the group too, and is caught on the next round."""
        kill_file = os.path.join(self.memory_folder, "cgroup.kill")
        if self.version == "v2" and os.path.exists(kill_file):
            try:
                _write(kill_file, 1)
            except OSError:
                pass
        deadline = time.monotonic() + REMOVE_WAIT_S
        while (pids := self.processes()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self) -> bool:
        """Kill what is left, then remove the folders; whether they are gone.
        The OOM kill count is kept: the caller may ask why the tree ended after."""
        with self._lock:
            if self.removed:
                return True
            self.kill()
            oom_kills = self.oom_kills()
            deadline = time.monotonic() + REMOVE_WAIT_S
            for folder in self.folders:
                while True:
                    try:
                        os.rmdir(folder)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:  # EBUSY: a killed process has not left yet
                        if time.monotonic() > deadline:
                            log.warning("control group %s not removed yet: %s", folder, exc)
                            return False
                        time.sleep(0.02)
            self._final_oom_kills = oom_kills
            self.removed = True
            return True


class V1Layout:
    """Groups in the v1 memory hierarchy and, when mounted, the pids hierarchy."""

    version = "v1"

    def __init__(self, memory_parent: str, pids_parent: str | None):
        self.memory_parent = memory_parent
        self.pids_parent = pids_parent

    @property
    def parents(self) -> list[str]:
        return [p for p in (self.memory_parent, self.pids_parent) if p]

    def prepare(self) -> None:
        for parent in self.parents:
            os.makedirs(parent, exist_ok=True)

    def group(self, name: str, memory_bytes: int = 0, max_processes: int = 0) -> Group:
        pids = os.path.join(self.pids_parent, name) if self.pids_parent else None
        return Group("v1", os.path.join(self.memory_parent, name), pids, memory_bytes, max_processes)

    def create(self, name: str, memory_bytes: int, max_processes: int) -> Group:
        group = self.group(name, memory_bytes, max_processes)
        for folder in group.folders:
            os.mkdir(folder)
        try:
            _write(os.path.join(group.memory_folder, "memory.limit_in_bytes"), memory_bytes)
            memsw = os.path.join(group.memory_folder, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):  # swap accounting on: memory + swap together, so no swap at all
                _write(memsw, memory_bytes)
            else:
                _write_if_possible(os.path.join(group.memory_folder, "memory.swappiness"), 0)
            if group.pids_folder:
                _write(os.path.join(group.pids_folder, "pids.max"), max_processes)
        except BaseException:
            group.remove()
            raise
        return group

    def swap_counted(self) -> bool:
        return os.path.exists(os.path.join(self.memory_parent, "memory.memsw.limit_in_bytes"))


class V2Layout:
    """Groups in the unified hierarchy, in a parent that hands them memory and pids."""

    version = "v2"
    CONTROLLERS = ("memory", "pids")

    def __init__(self, parent: str, service_group: str | None = None):
        self.parent = parent
        # The service's own group, when the parent is made inside it (the default).
        self.service_group = service_group

    @property
    def parents(self) -> list[str]:
        return [self.parent]

    def _enable(self, folder: str) -> None:
        """Hand the memory and pids controllers to `folder`'s children."""
        available = read(os.path.join(folder, "cgroup.controllers")).split()
        missing = [c for c in self.CONTROLLERS if c not in available]
        if missing:
            raise CgroupUnavailable(f"{folder} is not given the {' and '.join(missing)} controller(s) by its parent "
                                    "(delegate them: systemd's Delegate=yes, or a container with its own cgroup)")
        enabled = read(os.path.join(folder, "cgroup.subtree_control")).split()
        wanted = [c for c in self.CONTROLLERS if c not in enabled]
        if wanted:
            _write(os.path.join(folder, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))

    def prepare(self) -> None:
        if self.service_group is not None:
            own = self.service_group
            enabled = read(os.path.join(own, "cgroup.subtree_control")).split()
            if not all(c in enabled for c in self.CONTROLLERS) and _pids(own):
                # No internal processes: the service's processes move to a leaf first.
                leaf = os.path.join(own, SERVICE_LEAF)
                os.makedirs(leaf, exist_ok=True)
                for pid in _pids(own):
                    try:
                        _write(os.path.join(leaf, "cgroup.procs"), pid)
                    except ProcessLookupError:
                        pass
            self._enable(own)
            os.makedirs(self.parent, exist_ok=True)
        elif _pids(self.parent):
            raise CgroupUnavailable(f"{self.parent} holds processes, so it cannot have child groups with "
                                    "controllers: name an empty group in INFER_SANDBOX_CGROUP_PARENT")
        self._enable(self.parent)

    def group(self, name: str, memory_bytes: int = 0, max_processes: int = 0) -> Group:
        folder = os.path.join(self.parent, name)
        return Group("v2", folder, folder, memory_bytes, max_processes)

    def create(self, name: str, memory_bytes: int, max_processes: int) -> Group:
        group = self.group(name, memory_bytes, max_processes)
        os.mkdir(group.memory_folder)
        try:
            _write(os.path.join(group.memory_folder, "memory.max"), memory_bytes)
            _write_if_possible(os.path.join(group.memory_folder, "memory.swap.max"), 0)
            _write_if_possible(os.path.join(group.memory_folder, "memory.oom.group"), 1)  # the whole tree goes
            _write(os.path.join(group.memory_folder, "pids.max"), max_processes)
        except BaseException:
            group.remove()
            raise
        return group

    def swap_counted(self) -> bool:
        return True


def _write_if_possible(path: str, value) -> None:
    """For files a kernel may lack (swap control without swap accounting)."""
    try:
        _write(path, value)
    except OSError as exc:
        log.debug("%s not written: %s", path, exc)
