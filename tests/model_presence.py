"""A Hugging Face cache of a test's own, laid out as `hf download` leaves it, for the
tests of which global models are present (model_registry/availability.py)."""

import pytest
from huggingface_hub import constants as hf_constants

from model_registry import availability


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own, where the service (this
    process: the test client and live servers alike) looks for models."""
    cache = tmp_path / "hf-cache" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    availability.forget()
    yield cache
    availability.forget()


def put_in_cache(cache, repo_id: str, revision: str, commit: str, files: dict[str, str],
                 seen_at_once: bool = True) -> str:
    """Lay files out as `hf download REPO --revision REV` leaves them: the snapshot
    under its full commit, and refs/REV naming that commit when REV is not it.
    Returns the snapshot folder. `seen_at_once`: drop the presence answers kept
    for a few seconds, as a test that is not about them wants."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    if revision != commit:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
    if seen_at_once:
        availability.forget()
    return str(snapshot)
