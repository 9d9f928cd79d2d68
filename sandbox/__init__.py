"""Isolation for code the service did not write: uploaded models' code and
pickles, and the packages their requirements.txt installs."""

from .runner import Bind, Job, Limits, Sandbox, SandboxUnavailable

__all__ = ["Bind", "Job", "Limits", "Sandbox", "SandboxUnavailable"]
