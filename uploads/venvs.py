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

from .archive import remove_tree


def _site_packages(env_dir: str) -> str:
    paths = sysconfig.get_paths(vars={"base": env_dir, "platbase": env_dir})
    return paths["purelib"]


def create_model_venv(env_dir: str) -> None:
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(env_dir)
    with open(os.path.join(_site_packages(env_dir), "zz_service_packages.pth"), "w") as pth:
        pth.write("\n".join(service_package_paths()) + "\n")


def build_model_venv(model_sandbox, version_id: int, files_dir: str, venv_dir: str) -> str:
    """The version's venv with its requirements.txt installed (in its sandbox, as
    the build does), built beside venv_dir and renamed into place, so a venv that
    is there is complete; pip's output. RequirementsRejected and
    RequirementsFailed (uploads/model_sandbox.py) say why an install failed."""
    building = venv_dir + ".building"
    remove_tree(building)  # what an earlier attempt, stopped midway, left
    create_model_venv(building)
    model_sandbox.grant(version_id, files_dir, building)
    scratch = os.path.join(os.path.dirname(files_dir), "install")
    try:
        output = model_sandbox.install(version_id, files_dir, building, scratch)
    finally:
        remove_tree(scratch)
    os.rename(building, venv_dir)
    return output
