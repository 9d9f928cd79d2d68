"""Each user model gets its own virtual environment for its requirements.txt.

The venv also sees the service's own packages (torch, transformers, numpy...)
through a .pth file placed after its own site-packages, so a model's pinned
packages take precedence while the heavy shared ones are not installed again.
The service creates the venv; the install runs in the model's sandbox (see
model_sandbox.py), where those package folders are mounted read-only.
"""

import os
import sysconfig
import venv

from sandbox.system import service_package_paths


def _site_packages(env_dir: str) -> str:
    paths = sysconfig.get_paths(vars={"base": env_dir, "platbase": env_dir})
    return paths["purelib"]


def create_model_venv(env_dir: str) -> None:
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(env_dir)
    with open(os.path.join(_site_packages(env_dir), "zz_service_packages.pth"), "w") as pth:
        pth.write("\n".join(service_package_paths()) + "\n")
