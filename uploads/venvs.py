"""Each user model gets its own virtual environment for its requirements.txt.

The venv also sees the service's own packages (torch, transformers, numpy...)
through a .pth file placed after its own site-packages, so a model's pinned
packages take precedence while the heavy shared ones are not installed again.
"""

import os
import subprocess
import sys
import sysconfig
import venv


class RequirementsFailed(Exception):
    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


def _site_packages(env_dir: str) -> str:
    paths = sysconfig.get_paths(vars={"base": env_dir, "platbase": env_dir})
    return paths["purelib"]


def create_model_venv(env_dir: str) -> str:
    """Create the venv; return its Python."""
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(env_dir)
    service_paths = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    with open(os.path.join(_site_packages(env_dir), "zz_service_packages.pth"), "w") as pth:
        pth.write("\n".join(service_paths) + "\n")
    return os.path.join(env_dir, "bin", "python")


def install_requirements(python: str, requirements: str, timeout_s: float) -> str:
    """pip install -r requirements into that venv (using the service's pip); return pip's log."""
    if not os.path.isfile(requirements) or not open(requirements).read().strip():
        return "no requirements to install\n"
    env_dir = os.path.dirname(os.path.dirname(python))
    command = [
        sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--no-input",
        "--prefix", env_dir, "--no-warn-script-location", "-r", requirements,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RequirementsFailed(f"installing requirements.txt took over {timeout_s:g}s", str(exc.stdout or "")) from None
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise RequirementsFailed("installing requirements.txt failed", log)
    return log
