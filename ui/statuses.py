"""How the pages show a status of the API (a build's, a dataset's, a job's)."""

# The API's words as a person reads them, and the ui.css class that colours each.
STATUS_WORDS = {"fail": "failed", "awaiting_upload": "awaiting upload"}
STATUS_CLASSES = {"fail": "failed", "awaiting_upload": "pending", "processing": "parsing"}


def badge(status: str | None) -> tuple[str, str]:
    """(words, css class) of a status."""
    status = status or "unknown"
    return STATUS_WORDS.get(status, status), STATUS_CLASSES.get(status, status)
