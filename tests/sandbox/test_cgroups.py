"""The control group of each sandboxed process tree (sandbox/cgroups.py).

Against this machine's real cgroup v1 hierarchies (memory and pids, writable as
root): a tree runs in its group from its first instruction, with its limits
written; memory no process's size shows (a memfd, files in its tmpfs) stops it
and is counted; a fork bomb stops at pids.max even where RLIMIT_NPROC does not
apply; removing the group kills what is left, even a process that left the
tree's session; groups that a dead service left are swept, others' are not.

cgroup v2 cannot be run here (its hierarchy has no controllers on this host):
its file writes are tested on a v2 layout made under a temporary folder."""

import os
import subprocess
import threading
import time

import pytest

from sandbox import Job, Limits, Sandbox
from sandbox import cgroups
from sandbox.cgroup_layouts import CgroupUnavailable, Group, V2Layout, host_folder, mounts

# The real hierarchies are root's to write (CI and this machine run the tests as root).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the v1 hierarchies here are writable by root only")

MIB = 2**20


def limits(memory_mb: int = 128, processes: int = 32, tmp_mb: int = 16) -> Limits:
    return Limits(memory_mb * MIB, processes, 60, 256, 1 << 30, tmp_mb * MIB)


def run(box: Sandbox, script: str, job_limits: Limits) -> tuple[subprocess.Popen, str]:
    job = Job(["/usr/bin/python3", "-c", script], [], uid=box.uid_for(7), limits=job_limits)
    process = box.spawn(job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, process.communicate(timeout=120)[0]


@pytest.fixture(scope="module")
def box():
    box = Sandbox()
    assert box.problem() is None
    assert box.cgroups.describe()["enforcement"] == "cgroup v1", box.cgroups.describe()
    return box


@needs_root
def test_a_tree_runs_in_its_group_with_its_limits_and_the_group_goes_with_it(box):
    job = Job(["/bin/sleep", "60"], [], uid=box.uid_for(7), limits=limits(memory_mb=96, processes=24))
    process = box.spawn(job)
    group = process.sandbox_group
    try:
        memory = group.memory_folder
        until_inside = time.monotonic() + 30
        while len(group.processes()) < 3 and time.monotonic() < until_inside:
            time.sleep(0.05)
        # bwrap, its PID namespace's init, and sleep: the whole tree. bwrap is the
        # shell that joined the group (it exec'd prlimit, nice, then bwrap).
        assert len(group.processes()) >= 3 and process.pid in group.processes()
        with open(os.path.join(memory, "memory.limit_in_bytes")) as limit:
            assert int(limit.read()) == 96 * MIB
        with open(os.path.join(memory, "memory.memsw.limit_in_bytes")) as limit:
            assert int(limit.read()) == 96 * MIB  # memory and swap together: no swap at all
        with open(os.path.join(group.pids_folder, "pids.max")) as limit:
            assert int(limit.read()) == 24
    finally:
        box.kill(process)
    assert not any(os.path.exists(folder) for folder in group.folders)
    assert not box.over_memory(process)


@needs_root
@pytest.mark.parametrize("where", ["memfd", "tmpfs"])
def test_memory_no_process_size_shows_stops_the_tree_and_is_counted(box, where):
    fill = ("fd = os.memfd_create('x')\nwrite = lambda chunk: os.write(fd, chunk)\n" if where == "memfd" else
            "f = open('/tmp/fill', 'wb', buffering=0)\nwrite = f.write\n")
    script = f"import os\n{fill}for _ in range(40):\n    write(b'x' * (8 << 20))\nprint('held 320 MiB')\n"

    process, output = run(box, script, limits(memory_mb=128, tmp_mb=512))
    box.kill(process)

    assert "held" not in output and process.returncode != 0
    assert box.over_memory(process)  # counted before the group went, kept after
    assert process.sandbox_group.removed


@needs_root
def test_an_honest_tree_is_not_said_to_be_over_memory(box):
    process, output = run(box, "print(sum(range(1000)))", limits())
    box.kill(process)

    assert output.strip() == "499500" and process.returncode == 0
    assert not box.over_memory(process)


@needs_root
def test_a_fork_bomb_stops_at_pids_max_where_rlimit_nproc_does_not_apply():
    # SANDBOX=none as root: RLIMIT_NPROC does not bind root, so only pids.max can.
    box = Sandbox("none")
    script = ("import os, time\nforks = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
              "            time.sleep(60)\n            os._exit(0)\n        forks += 1\n"
              "except OSError as exc:\n    print(forks, exc.errno, flush=True)\ntime.sleep(60)\n")
    job = Job(["/usr/bin/python3", "-c", script], [], uid=0, limits=limits(processes=20))
    process = box.spawn(job, stdout=subprocess.PIPE, text=True)
    try:
        forks, error = process.stdout.readline().split()
        group = process.sandbox_group
        assert int(forks) < 20 and int(error) == 11  # EAGAIN
        assert group.forks_refused() >= 1
        assert len(group.processes()) <= 20
    finally:
        box.kill(process)
    assert not any(os.path.exists(folder) for folder in group.folders)


@needs_root
def test_killing_the_tree_reaches_a_process_that_left_its_session():
    box = Sandbox("none")  # without bwrap's PID namespace: only the group finds it
    script = ("import subprocess, time\nchild = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
              "print(child.pid, flush=True)\ntime.sleep(300)\n")
    job = Job(["/usr/bin/python3", "-c", script], [], uid=0, limits=limits())
    process = box.spawn(job, stdout=subprocess.PIPE, text=True)
    escaped = int(process.stdout.readline())
    assert escaped in process.sandbox_group.processes()

    box.kill(process)

    deadline = time.monotonic() + 30
    while _running(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(escaped)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@needs_root
def test_groups_of_a_dead_service_are_swept_and_no_one_elses(box):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no process has now
    namespace = cgroups._pid_namespace()
    layout = box.cgroups.layout
    left_by_dead = layout.create(f"sandbox-{namespace}-{dead.pid}-1", 64 * MIB, 8)
    of_the_living = layout.create(f"sandbox-{namespace}-{os.getpid()}-999999", 64 * MIB, 8)
    other_namespace = layout.create(f"sandbox-1-{dead.pid}-1", 64 * MIB, 8)
    try:
        fresh = cgroups.ControlGroups()
        assert fresh.active

        assert not any(os.path.exists(f) for f in left_by_dead.folders)
        assert all(os.path.exists(f) for f in of_the_living.folders + other_namespace.folders)
    finally:
        of_the_living.remove()
        other_namespace.remove()


@needs_root
def test_a_sandbox_started_from_a_thread_that_ends_outlives_the_thread(box):
    # bwrap's --die-with-parent watches the thread that forked it: spawns go through one long-lived thread.
    started = []

    def start():
        started.append(box.spawn(Job(["/bin/sleep", "60"], [], uid=box.uid_for(7), limits=limits())))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    try:
        time.sleep(0.5)  # bwrap sets its parent-death signal on start: give a wrong one time to fire
        assert started[0].poll() is None
    finally:
        box.kill(started[0])


# --- choosing, without a writable hierarchy or with a named mode ------------------------


def fake_proc(tmp_path, mountinfo: str, cgroup: str) -> str:
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return str(proc)


def test_auto_falls_back_to_none_when_no_hierarchy_can_be_had(tmp_path):
    groups = cgroups.ControlGroups("auto", proc_self=fake_proc(tmp_path, "", "0::/\n"))

    assert not groups.active and groups.problem is None
    assert groups.create(64 * MIB, 8) is None
    described = groups.describe()
    assert described["enforcement"] == "none" and "no cgroup2 hierarchy" in described["why"]


def test_a_named_mode_that_cannot_be_had_is_a_problem(tmp_path):
    groups = cgroups.ControlGroups("v2", proc_self=fake_proc(tmp_path, "", "0::/\n"))

    assert not groups.active
    assert "INFER_SANDBOX_CGROUP=v2 cannot be had here" in groups.problem


def test_a_mode_not_known_is_refused():
    with pytest.raises(ValueError, match="INFER_SANDBOX_CGROUP must be one of auto, v2, v1, off"):
        cgroups.ControlGroups("v3")


def test_mounts_and_groups_are_read_as_the_kernel_writes_them(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
                    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                    "40 31 0:37 /docker/abc /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")

    found = mounts(str(info))

    assert found == [("cgroup", "/sys/fs/cgroup/memory", "/", {"rw", "memory"}),
                     ("cgroup2", "/sys/fs/my cgroup", "/docker/abc", {"rw", "nsdelegate"})]
    assert host_folder("/sys/fs/cgroup/memory", "/", "/a/b") == "/sys/fs/cgroup/memory/a/b"
    assert host_folder("/sys/fs/cgroup", "/docker/abc", "/docker/abc/svc") == "/sys/fs/cgroup/svc"


# --- cgroup v2's file writes, on a layout under a temporary folder ----------------------


@pytest.fixture
def v2_tree(tmp_path):
    """A unified hierarchy as the kernel shows it, the service in /svc with two processes."""
    root = tmp_path / "unified"
    service = root / "svc"
    service.mkdir(parents=True)
    (service / "cgroup.controllers").write_text("cpu io memory pids\n")
    (service / "cgroup.subtree_control").write_text("\n")
    (service / "cgroup.procs").write_text("111\n222\n")
    sandboxes = service / "infer-sandbox"  # what mkdir makes in a real hierarchy: made here beforehand
    sandboxes.mkdir()
    (sandboxes / "cgroup.controllers").write_text("memory pids\n")
    (sandboxes / "cgroup.subtree_control").write_text("\n")
    proc = fake_proc(tmp_path, f"50 31 0:40 / {root} rw - cgroup2 cgroup2 rw\n", "0::/svc\n")
    return root, service, proc


def test_v2_moves_the_service_to_a_leaf_and_hands_the_controllers_down(v2_tree):
    root, service, proc = v2_tree
    layout = cgroups.ControlGroups("v2", proc_self=proc)._layout("v2")

    layout.prepare()

    assert layout.parent == str(service / "infer-sandbox")
    assert (service / "service" / "cgroup.procs").read_text() == "222"  # each pid written in turn: the last stays
    assert (service / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (service / "infer-sandbox" / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_v2_writes_a_trees_limits_and_reads_its_oom_kills(v2_tree):
    root, service, proc = v2_tree
    layout = cgroups.ControlGroups("v2", proc_self=proc)._layout("v2")
    layout.prepare()

    group = layout.create("sandbox-1-2-3", 256 * MIB, 40)

    folder = service / "infer-sandbox" / "sandbox-1-2-3"
    assert (folder / "memory.max").read_text() == str(256 * MIB)
    assert (folder / "memory.swap.max").read_text() == "0"
    assert (folder / "memory.oom.group").read_text() == "1"  # the whole tree goes at once
    assert (folder / "pids.max").read_text() == "40"
    assert group.procs_files == [str(folder / "cgroup.procs")]
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (folder / "pids.events").write_text("max 2\n")
    assert group.oom_kills() == 1 and group.forks_refused() == 2


def test_v2_refuses_a_named_parent_that_holds_processes(v2_tree):
    root, service, proc = v2_tree

    with pytest.raises(CgroupUnavailable, match="holds processes"):
        V2Layout(str(service)).prepare()


def test_v2_says_what_is_missing_when_the_controllers_are_not_delegated(v2_tree):
    root, service, proc = v2_tree
    (service / "cgroup.controllers").write_text("cpu io\n")

    with pytest.raises(CgroupUnavailable, match="no memory and pids controllers"):
        cgroups.ControlGroups("v2", proc_self=proc)._layout("v2")


def test_a_v1_group_without_a_pids_hierarchy_has_only_its_memory_folder(tmp_path):
    group = Group("v1", str(tmp_path / "memory" / "g"), None)

    assert group.folders == [str(tmp_path / "memory" / "g")]
    assert group.forks_refused() == 0
