"""Parsing and checking uploaded training data.

parse_dataset() turns an uploaded file (CSV, JSON Lines, or a zip of images in
one folder per label) into normalised rows (rows.jsonl, one row per line; keys
by format, see FORMAT_TASKS' formats in the trainers' docs), statistics and a
parse log; read_rows() reads those rows back for a training job. The parse runner
(training/dataset_parses.py) runs it in a child process with a memory cap (child.py).

base.py        formats, limits, DatasetRejected
reading.py     what kind a file is; its lines and CSV records, within the limits
detection.py   which format columns or keys are in, and which column holds what
text_formats.py  rows of the text formats, from CSV or JSON Lines
tabular.py     rows of tabular CSVs, each column numeric or categorical
image_zip.py   a zip of images -> images/<label>/<file>
statistics.py  the rows collected, counted and summarised
parse.py       parse_dataset, read_rows
samples.py     samples sent to add to a dataset, checked as an upload's rows
revisions.py   an edit (add, remove, remove a class) -> a new revision's folder
child.py       python -m training.datasets.child WORK_DIR
"""

from .base import FORMAT_TASKS, DatasetLimits, DatasetRejected
from .parse import parse_dataset, read_rows

__all__ = ["FORMAT_TASKS", "DatasetLimits", "DatasetRejected", "parse_dataset", "read_rows"]
