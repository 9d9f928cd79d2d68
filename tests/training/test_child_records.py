"""The typed records that cross the process boundary (training/child_records.py):
what the runner writes is what the child reads, and a record the other side
cannot read says so."""

import json

import pytest

from core.settings import Settings
from training.child_records import ParseOutcome, ParseRequest, TrainingRequest, TrainingResult
from training.sandboxed import ChildSandbox


def _request(**changes) -> TrainingRequest:
    fields = dict(job_id="job_1", task="text-classification", base_model="tiny", base_model_dir="/cache/tiny",
                  base_model_file=None, hyperparameters={"epochs": 2}, dataset_format="text-label",
                  dataset_dir="/data/datasets/ds_1", validation_dataset_dir=None, validation_split=0.2,
                  torch_threads=1, nice=10, memory_mb=2048, settings={"MODEL_DIR": "/models-here"})
    return TrainingRequest(**{**fields, **changes})


def test_a_training_request_reads_back_as_it_was_written_through_json():
    request = _request()
    assert TrainingRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_a_record_leaves_out_keys_it_does_not_know_and_refuses_one_that_is_missing():
    written = {**TrainingResult("tabular", ["tabular"], 1, {"accuracy": 1.0}).to_dict(), "later_field": 1}
    assert TrainingResult.from_dict(written).best_epoch == 1
    with pytest.raises(TypeError):
        TrainingResult.from_dict({"format": "tabular"})
    with pytest.raises(TypeError):
        TrainingResult.from_dict(["not", "an", "object"])


def test_unsandboxed_a_child_reads_the_request_as_the_runner_made_it():
    children = ChildSandbox(Settings(training_sandbox_uid_base=0, sandbox_uid_count=1, sandbox_uid_base=0), None)
    request = _request()
    parse = ParseRequest(source="/data/datasets/ds_1/source", limits={"max_rows": 5}, nice=10)
    assert children.child_request(request) == request and children.parse_request(parse) == parse


def test_a_failed_parse_outcome_carries_its_message_and_log():
    line = {"timestamp": "2026-12-06T00:00:00Z", "message": "Failed: no rows"}
    outcome = ParseOutcome.failed("no rows", [line])
    assert outcome.to_dict() == {"status": "failed", "message": "no rows", "format": None, "stats": None,
                                 "log": [line]}
