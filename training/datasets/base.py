"""What every part of dataset parsing shares: the formats, the limits, the one failure."""

from dataclasses import dataclass

from uploads.archive import ArchiveLimits

# Each format and the tasks it can train (the API lists them; a job checks its
# dataset's format against its task with this table).
FORMAT_TASKS = {
    "text-label": ["text-classification"],
    "text-pairs": ["text-vectorisation"],
    "text-triplets": ["text-vectorisation"],
    "scored-pairs": ["text-vectorisation"],
    "prompt-completion": ["text-generation"],
    "chat": ["text-generation"],
    "image-folders": ["image-classification"],
    "tabular": ["tabular"],
}

# Formats whose rows carry a class label: at least two, at most the limit.
LABELLED_FORMATS = ("text-label", "image-folders")

# How many line numbers the statistics keep (the counts are always complete).
LISTED_LINES = 100

# The settings behind each limit, named in the messages so the operator knows what to raise.
MAX_ROWS_SETTING = "INFER_DATASET_MAX_ROWS"
MAX_LINE_SETTING = "INFER_DATASET_MAX_LINE_BYTES"
MAX_LABELS_SETTING = "INFER_DATASET_MAX_LABELS"
MAX_PIXELS_SETTING = "INFER_MAX_IMAGE_PIXELS"


class DatasetRejected(Exception):
    """The whole dataset fails; the message says what to fix."""


@dataclass(frozen=True)
class DatasetLimits:
    max_rows: int
    max_line_bytes: int
    max_image_pixels: int
    max_label_count: int
    archive: ArchiveLimits

    @classmethod
    def from_request(cls, limits: dict) -> "DatasetLimits":
        """From parse_request.json's "limits" (the keys the job runner writes)."""
        return cls(
            max_rows=int(limits["max_rows"]),
            max_line_bytes=int(limits["max_line_bytes"]),
            max_image_pixels=int(limits["max_image_pixels"]),
            max_label_count=int(limits["max_label_count"]),
            archive=ArchiveLimits(
                max_archive_bytes=int(limits["max_archive_bytes"]),
                max_members=int(limits["max_members"]),
                max_uncompressed_bytes=int(limits["max_uncompressed_bytes"]),
                max_ratio=int(limits["max_ratio"]),
            ),
        )


def format_list() -> str:
    return ", ".join(sorted(FORMAT_TASKS))
