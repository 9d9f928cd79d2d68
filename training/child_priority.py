"""A sandboxed child's priority: below the requests the service answers beside it
(both children: training, training/child.py; dataset parses, training/datasets/child.py)."""

import os


def lower_priority(request) -> None:
    """Requests served beside the job come first. Unsandboxed the child nices
    itself; the sandbox starts it niced already, but in a session of its own,
    which Linux schedules as a group (an autogroup) weighing as much as the
    whole service: that group is niced too. (`request`: a TrainingRequest or a
    ParseRequest, training/child_records.py.)"""
    os.nice(max(0, request.nice))
    autogroup_nice = request.autogroup_nice
    if autogroup_nice > 0:
        try:
            with open("/proc/self/autogroup", "w") as autogroup:
                autogroup.write(str(min(19, autogroup_nice)))
        except OSError:  # no autogroups here (the kernel's setting, or a cgroup's CPU share decides)
            pass
