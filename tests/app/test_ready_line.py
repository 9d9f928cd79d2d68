"""The serve command's "ready" line: printed once, when the last worker has loaded its models."""

from app.preload import preload_entries
from app.ready_line import base_url, ready_text, worker_gone, worker_ready


def test_the_last_of_the_workers_to_be_ready_prints_it_once(tmp_path):
    assert worker_ready(str(tmp_path), 101, workers=2) is False
    assert worker_ready(str(tmp_path), 102, workers=2) is True
    # A worker replaced later (a restart, a crash) is ready again without a second line.
    worker_gone(str(tmp_path), 101)
    assert worker_ready(str(tmp_path), 103, workers=2) is False


def test_a_dead_workers_marker_does_not_count(tmp_path):
    assert worker_ready(str(tmp_path), 101, workers=2) is False
    worker_gone(str(tmp_path), 101)
    assert worker_ready(str(tmp_path), 102, workers=2) is False
    assert worker_ready(str(tmp_path), 103, workers=2) is True


def test_the_url_is_one_a_browser_opens():
    assert base_url("127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert base_url("0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert base_url("unix:/run/infer.sock") == "unix:/run/infer.sock"


def test_the_line_names_the_models_and_where_to_go_next():
    text = ready_text("127.0.0.1:8000", 2, "english (all-MiniLM-L6-v2 on onnx)", {})

    assert text.splitlines()[0] == ("ready: http://127.0.0.1:8000 "
                                    "(2 workers; models loaded: english (all-MiniLM-L6-v2 on onnx))")
    assert "http://127.0.0.1:8000/ui/" in text and "http://127.0.0.1:8000/docs" in text


def test_a_model_that_failed_to_load_is_named_instead_of_ready():
    text = ready_text("127.0.0.1:8000", 2, "none", {"text-vectorisation:multilingual": "Model ... is not available"})

    assert text.startswith("started, NOT ready: http://127.0.0.1:8000")
    assert "text-vectorisation:multilingual: Model ... is not available" in text
    assert "/readyz answers 503" in text


def test_the_preload_setting_is_a_comma_separated_list():
    assert preload_entries(" text-vectorisation:english, ,all-MiniLM-L6-v2 ") == [
        "text-vectorisation:english", "all-MiniLM-L6-v2"]
    assert preload_entries("") == []
