"""The seccomp filter every sandboxed process runs under: a deny list of the
system calls that reach the kernel's most exposed surfaces.

The namespaces already take away the network, other processes and the host's
files; these calls are what a process could still use to climb out of them
(new user namespaces with fresh capabilities, mounts, ptrace, kernel keyrings,
BPF, io_uring, module loading...). Denied calls fail with EPERM, so a program
that merely probes for a feature carries on; clone3 fails with ENOSYS, because
its flags sit in a struct a filter cannot read, and the C library then falls
back to clone, whose flags it can. A process of a foreign architecture (a
32-bit call on a 64-bit kernel) is killed: the syscall numbers below would not
mean what they say.

Where no control group bounds a sandbox's memory (sandbox/cgroups.py), the
filter also denies memfd_create and System V shared memory (SHARED_MEMORY):
memory made that way is outside the address space RLIMIT_AS counts, so it
would have no bound at all. POSIX shared memory stays: it lives in /dev/shm,
a tmpfs of fixed size.

The program is classic BPF, written out here so the service needs no libseccomp
bindings: bwrap loads it with --seccomp right before it starts the command.
"""

import errno
import platform
import struct

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06

_CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

# name: (x86_64 number, aarch64 number); None where the call does not exist.
DENIED = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kcmp": (312, 272), "pidfd_getfd": (438, 438),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "unshare": (272, 97), "setns": (308, 268),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "reboot": (169, 142),
    "swapon": (167, 224), "swapoff": (168, 225), "acct": (163, 89), "syslog": (103, 116),
    "quotactl": (179, 60), "quotactl_fd": (443, 443), "lookup_dcookie": (212, 18),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171),
    "sethostname": (170, 161), "setdomainname": (171, 162), "vhangup": (153, 58),
    "personality": (135, 92), "fanotify_init": (300, 262),
    "iopl": (172, None), "ioperm": (173, None), "modify_ldt": (154, None), "uselib": (134, None),
}
# Denied (EPERM) only when no control group counts the memory they make.
SHARED_MEMORY = {
    "memfd_create": (319, 279), "memfd_secret": (447, 447),
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "shmdt": (67, 197),
}
_CLONE = (56, 220)
_CLONE3 = (435, 435)


class UnsupportedArchitecture(RuntimeError):
    pass


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def build_filter(machine: str | None = None, deny_shared_memory: bool = False) -> bytes:
    """The compiled filter for this machine's architecture; with
    deny_shared_memory, SHARED_MEMORY's calls fail with EPERM too."""
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        raise UnsupportedArchitecture(f"no seccomp filter for {machine}; known: {', '.join(_AUDIT_ARCH)}")
    column = 0 if machine == "x86_64" else 1
    deny_eperm = _op(_RET_K, _RET_ERRNO | errno.EPERM)
    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, _AUDIT_ARCH[machine], jt=1),
        _op(_RET_K, _RET_KILL_PROCESS),
        _op(_LD_W_ABS, _NR),
    ]
    if machine == "x86_64":  # the x32 ABI: the same calls under other numbers
        program += [_op(_JGE_K, _X32_SYSCALL_BIT, jf=1), deny_eperm]
    denied = [*DENIED.values(), *(SHARED_MEMORY.values() if deny_shared_memory else ())]
    for numbers in denied:
        if numbers[column] is not None:
            program += [_op(_JEQ_K, numbers[column], jf=1), deny_eperm]
    program += [_op(_JEQ_K, _CLONE3[column], jf=1), _op(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # clone: allowed, unless it asks for a new namespace.
    program += [
        _op(_JEQ_K, _CLONE[column], jf=3),
        _op(_LD_W_ABS, _ARG0_LOW),
        _op(_JSET_K, _CLONE_NAMESPACE_FLAGS, jf=1),
        deny_eperm,
        _op(_RET_K, _RET_ALLOW),
    ]
    return b"".join(program)
