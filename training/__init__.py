"""Training: datasets, training jobs and the trainers that turn them into model versions.

datasets/   parse and check an uploaded dataset (CSV, JSONL, a zip of images), in a
            child process, into normalised rows with statistics and a parse log
trainers/   one trainer per task, each wrapping a well-kept library (SetFit,
            sentence-transformers, transformers + PEFT, scikit-learn)
jobs.py     the training jobs' runner (core/runner.py): claims queued jobs (leases), runs
            each in a child process, records its per-epoch statistics, resumes after a crash
dataset_parses.py  the dataset parses' runner: each parse in a child process (parsing.py)
child.py    what the child process runs: one job, from its job.json, to a model version
child_records.py  what crosses the process boundary, typed: requests, results, outcomes

Nothing here imports a training library at import time: the web workers import
this package for the hyperparameter schemas, and must stay light.
"""
