"""Parsing well-formed datasets of every format: detection, normalised rows, statistics."""

import csv
import io
import json
import os
import zipfile

import pytest

from training.datasets import FORMAT_TASKS, DatasetLimits, parse_dataset, read_rows
from uploads.archive import ArchiveLimits

LIMITS = DatasetLimits(max_rows=10_000, max_line_bytes=10_000, max_image_pixels=1_000_000, max_label_count=50,
                       archive=ArchiveLimits(max_archive_bytes=10**8, max_members=1000,
                                             max_uncompressed_bytes=10**8, max_ratio=100))


def parse(tmp_path, content, declared=None, options=None, limits=LIMITS):
    """Write `content` (str or bytes) as the source, parse it -> (stats, log lines, rows)."""
    source = tmp_path / "source"
    source.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    log = []
    stats = parse_dataset(str(source), str(tmp_path), declared, options or {}, limits, log.append)
    return stats, log, read_rows(str(tmp_path))


def jsonl(*objects) -> str:
    return "".join((json.dumps(item) if not isinstance(item, str) else item) + "\n" for item in objects)


def test_every_format_trains_at_least_one_task():
    assert all(FORMAT_TASKS[name] for name in FORMAT_TASKS)
    assert FORMAT_TASKS["text-label"] == ["text-classification"] and FORMAT_TASKS["tabular"] == ["tabular"]


def test_text_label_csv_keeps_quoted_commas_and_newlines_and_lists_empty_and_bad_lines(tmp_path):
    content = (
        "text,label\n"             # line 1
        '"great, really",pos\n'    # 2
        '"two\nlines",neg\n'       # 3-4
        "\n"                       # 5 empty
        ",\n"                      # 6 empty
        "no label here,\n"         # 7 bad
        "too,many,fields\n"        # 8 bad
        "fine,pos\n"               # 9
        ",neg\n"                   # 10 bad: no text
    )
    stats, log, rows = parse(tmp_path, content)
    assert rows == [{"text": "great, really", "label": "pos"}, {"text": "two\nlines", "label": "neg"},
                    {"text": "fine", "label": "pos"}]
    assert stats["format"] == "text-label" and stats["rows"] == 3
    assert stats["labels"] == {"neg": 1, "pos": 2}
    assert (stats["empty_rows"], stats["empty_row_lines"]) == (2, [5, 6])
    assert stats["bad_rows"] == 3
    assert [entry["line"] for entry in stats["bad_row_lines"]] == [7, 8, 10]
    assert stats["bad_row_lines"][0]["reason"] == "no label"
    assert stats["bad_row_lines"][2]["reason"] == "empty text"
    assert stats["input_lengths"] == {"min": 4, "max": 13, "mean": 8.67, "p50": 9, "p95": 13}
    assert log[0] == f"Reading {len(content)} bytes as CSV"
    assert "Detected format text-label: columns text, label" in log
    assert "line 7: no label; skipped" in log
    assert log[-1] == "Ready: 3 rows, 2 labels, 2 empty rows skipped, 3 bad rows skipped"


def test_text_label_columns_found_by_usual_names_or_named_by_options(tmp_path):
    stats, log, rows = parse(tmp_path, "Sentence,Category\na,x\nb,y\n")
    assert rows == [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    assert "Detected format text-label: columns Sentence as text, Category as label" in log
    stats, log, rows = parse(tmp_path, "id,review,sentiment\n1,good,1\n2,bad,0\n",
                             options={"text_column": "review", "label_column": "sentiment"})
    assert rows == [{"text": "good", "label": "1"}, {"text": "bad", "label": "0"}]
    assert stats["labels"] == {"0": 1, "1": 1}


def test_tab_separated_file_with_a_byte_order_mark_is_read(tmp_path):
    stats, log, rows = parse(tmp_path, "\ufefftext\tlabel\nhello, you\tgreeting\nbye\tfarewell\n")
    assert rows == [{"text": "hello, you", "label": "greeting"}, {"text": "bye", "label": "farewell"}]
    assert any("separated by tabs" in line for line in log)


def test_prompt_completion_jsonl_lengths_count_prompt_and_completion(tmp_path):
    content = jsonl({"prompt": "Say hi", "completion": " hi"}, {"prompt": "2+2=", "completion": "4"},
                    {"prompt": "no completion"}, "", {"prompt": "", "completion": ""})
    stats, log, rows = parse(tmp_path, content)
    assert stats["format"] == "prompt-completion" and stats["labels"] is None
    assert rows == [{"prompt": "Say hi", "completion": " hi"}, {"prompt": "2+2=", "completion": "4"}]
    assert stats["bad_row_lines"] == [{"line": 3, "reason": "empty completion"}]
    assert stats["empty_row_lines"] == [4, 5]
    assert stats["input_lengths"]["min"] == 5 and stats["input_lengths"]["max"] == 9
    assert "Detected format prompt-completion: keys prompt, completion" in log


def test_chat_jsonl_skips_bad_roles_broken_json_and_chats_without_an_answer(tmp_path):
    good = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello", "name": "ignored"}]}
    content = jsonl(good, {"messages": [{"role": "robot", "content": "x"}]}, '{"messages": [', good,
                    {"messages": [{"role": "user", "content": "only a question"}]}, '["a list"]', good, good, good)
    stats, log, rows = parse(tmp_path, content)
    assert stats["format"] == "chat" and stats["rows"] == 5
    assert rows[0] == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello"}]}
    reasons = {entry["line"]: entry["reason"] for entry in stats["bad_row_lines"]}
    assert set(reasons) == {2, 3, 5, 6}
    assert "role 'robot'" in reasons[2] and reasons[3].startswith("not valid JSON")
    assert reasons[5] == "no assistant message with content to learn from" and "not an object" in reasons[6]
    assert stats["input_lengths"]["p50"] == len("Be brief.") + len("Hi") + len("Hello")


@pytest.mark.parametrize(("content", "expected_format", "first_row"), [
    ("anchor,positive\nq1,d1\nq2,d2\n", "text-pairs", {"anchor": "q1", "positive": "d1"}),
    ("anchor,positive,negative\nq1,d1,n1\nq2,d2,n2\n", "text-triplets",
     {"anchor": "q1", "positive": "d1", "negative": "n1"}),
    ("sentence1,sentence2,score\nq1,d1,0.25\nq2,d2,1\n", "scored-pairs",
     {"sentence1": "q1", "sentence2": "d1", "score": 0.25}),
    (jsonl({"anchor": "q1", "positive": "d1", "negative": "n1"}, {"anchor": "q2", "positive": "d2", "negative": "n2"}),
     "text-triplets", {"anchor": "q1", "positive": "d1", "negative": "n1"}),
    (jsonl({"sentence1": "q1", "sentence2": "d1", "score": 0.25}, {"sentence1": "q2", "sentence2": "d2", "score": 1}),
     "scored-pairs", {"sentence1": "q1", "sentence2": "d1", "score": 0.25}),
])
def test_pair_formats_are_detected_from_their_columns(tmp_path, content, expected_format, first_row):
    stats, log, rows = parse(tmp_path, content)
    assert stats["format"] == expected_format and stats["rows"] == 2 and stats["labels"] is None
    assert rows[0] == first_row
    assert stats["input_lengths"] == {"min": 2, "max": 2, "mean": 2, "p50": 2, "p95": 2}


def test_scored_pairs_with_scores_out_of_range_or_not_numbers_are_bad_rows(tmp_path):
    stats, _, rows = parse(tmp_path, "sentence1,sentence2,score\na,b,0.5\nc,d,3.5\ne,f,high\ng,h,0\ni,j,0.9\n")
    assert [row["score"] for row in rows] == [0.5, 0.0, 0.9]
    assert [entry["line"] for entry in stats["bad_row_lines"]] == [3, 4]
    assert "not between 0 and 1" in stats["bad_row_lines"][0]["reason"]


def test_declared_format_is_used_where_detection_would_pick_another(tmp_path):
    # "text,label" would be detected as text-label; declared tabular trains on both columns.
    stats, log, rows = parse(tmp_path, "text,label,size\na,x,1\nb,y,2\nc,x,3\n", declared="tabular")
    assert stats["format"] == "tabular" and stats["label_column"] == "label"
    assert rows[0] == {"features": {"text": "a", "size": 1.0}, "label": "x"}


def _iris_csv() -> str:
    from sklearn.datasets import load_iris

    iris = load_iris()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*iris.feature_names, "species"])
    for features, target in zip(iris.data, iris.target):
        writer.writerow([*features, iris.target_names[target]])
    return out.getvalue()


def test_tabular_iris_has_numeric_columns_and_species_label_counts(tmp_path):
    stats, log, rows = parse(tmp_path, _iris_csv())
    assert stats["format"] == "tabular" and stats["rows"] == 150
    assert stats["label_column"] == "species" and stats["label_kind"] == "categorical"
    assert stats["labels"] == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert stats["columns"] == [{"name": name, "kind": "numeric", "missing": 0} for name in
                                ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")]
    assert rows[0] == {"features": {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
                                    "petal width (cm)": 0.2}, "label": "setosa"}
    assert "Detected format tabular: 5 columns" in log
    assert any(line.startswith("Label column 'species' (by the last column") for line in log)


def test_tabular_regression_label_is_numeric_with_missing_values_and_bad_numbers(tmp_path):
    lines = ["rooms,city,price"] + [f"{n % 5 + 1},{'north' if n % 2 else 'south'},{100 + n * 7.5}" for n in range(30)]
    lines[3] = "NA,north,120.5"      # line 4: a missing number
    lines[5] = "many,south,130.0"    # line 6: a word in a numeric column
    lines[7] = "3,,NA"               # line 8: no label
    stats, _, rows = parse(tmp_path, "\n".join(lines) + "\n")
    assert stats["label_kind"] == "numeric" and stats["label_column"] == "price" and stats["labels"] is None
    assert stats["columns"] == [{"name": "rooms", "kind": "numeric", "missing": 1},
                                {"name": "city", "kind": "categorical", "missing": 0}]
    assert stats["bad_row_lines"] == [{"line": 6, "reason": "column 'rooms': 'many' is not a number"},
                                      {"line": 8, "reason": "no label"}]
    assert rows[2] == {"features": {"rooms": None, "city": "north"}, "label": 120.5}
    assert stats["rows"] == 28 and stats["label_values"]["min"] == 100.0


def test_tabular_whole_number_label_with_few_values_is_class_codes(tmp_path):
    stats, _, rows = parse(tmp_path, "x,y\n" + "".join(f"{n},{n % 3}\n" for n in range(12)))
    assert stats["label_kind"] == "categorical" and stats["label_column"] == "y"
    assert stats["labels"] == {"0": 4, "1": 4, "2": 4}
    assert rows[1] == {"features": {"x": 1.0}, "label": "1"}


def png_bytes(size, colour="red", mode="RGB") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format="PNG")
    return out.getvalue()


def write_zip(path, members: dict) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def test_image_zip_extracts_images_into_label_folders_and_rows_point_at_them(tmp_path):
    content = write_zip(tmp_path / "images.zip", {
        "photos/cat/1.png": png_bytes((8, 6)), "photos/cat/2.png": png_bytes((10, 6), "blue"),
        "photos/dog/1.png": png_bytes((12, 4), "green"), "photos/dog/2.png": png_bytes((20, 4)),
        "photos/dog/.DS_Store": b"junk", "__MACOSX/photos/cat/._1.png": b"junk",
    })
    work = tmp_path / "work"
    work.mkdir()
    stats, log, rows = parse(work, content)
    assert stats["format"] == "image-folders" and stats["rows"] == 4 and stats["bad_rows"] == 0
    assert stats["labels"] == {"cat": 2, "dog": 2}
    assert sorted(rows, key=lambda row: row["image"]) == [
        {"image": "images/cat/1.png", "label": "cat"}, {"image": "images/cat/2.png", "label": "cat"},
        {"image": "images/dog/1.png", "label": "dog"}, {"image": "images/dog/2.png", "label": "dog"}]
    assert (work / "images" / "dog" / "2.png").read_bytes() == png_bytes((20, 4))
    assert sorted(os.listdir(work / "images")) == ["cat", "dog"]
    assert stats["input_lengths"]["width"] == {"min": 8, "max": 20, "mean": 12.5, "p50": 10, "p95": 20}
    assert stats["input_lengths"]["height"]["max"] == 6
    assert "Detected format image-folders: 2 label folders (cat, dog)" in log
    assert any("Ignored 2 hidden or system files" in line for line in log)
