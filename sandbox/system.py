"""The host paths a sandboxed Python needs to see, all read-only: the system's
programs and libraries, a few files of /etc, the Python installation and the
service's installed packages (torch, transformers... so models need not install
them again). Never the service's own code, its data dir or its configuration.
"""

import os
import sys

# /etc holds configuration and sometimes secrets: only what the dynamic linker,
# TLS and name lookups read. /etc/passwd and /etc/group are written per sandbox.
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "hosts",
    "ssl", "ca-certificates", "ca-certificates.conf", "mime.types", "alternatives",
)
# Merged-/usr systems make these symlinks into /usr; older ones have real folders.
TOP_LEVEL_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def service_package_paths() -> list[str]:
    """The service's site-packages folders (what a model's venv adds to its own)."""
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]


def python_paths() -> list[str]:
    """The Python installation a model's venv points at, where /usr does not hold it."""
    paths = []
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}:
        if not (prefix == "/usr" or prefix.startswith("/usr/")):
            paths.append(prefix)
    return sorted(paths)


def system_binds() -> list[tuple[str, str, str]]:
    """(kind, source, target) for the system part of every sandbox; kind is
    "ro", "ro-try" (skip when absent) or "symlink" (source is the link's target)."""
    binds = [("ro", "/usr", "/usr")]
    for name in TOP_LEVEL_SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            binds.append(("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            binds.append(("ro", path, path))
    for name in ETC_FILES:
        binds.append(("ro-try", "/etc/" + name, "/etc/" + name))
    for path in [*python_paths(), *service_package_paths()]:
        binds.append(("ro", path, path))
    return binds
