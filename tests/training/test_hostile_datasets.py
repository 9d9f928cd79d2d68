"""Datasets that must fail, or lose rows, with a message that says what to fix; and the
child process that parses them, run for real."""

import io
import json
import os
import stat
import subprocess
import struct
import sys
import zipfile
import zlib

import pytest

from training.datasets import DatasetLimits, DatasetRejected, parse_dataset, read_rows
from uploads.archive import ArchiveLimits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVE = ArchiveLimits(max_archive_bytes=10**8, max_members=100, max_uncompressed_bytes=10**8, max_ratio=100)
LIMITS = DatasetLimits(max_rows=1000, max_line_bytes=1000, max_image_pixels=10_000, max_label_count=5, archive=ARCHIVE)


def parse(tmp_path, content, declared=None, options=None, limits=LIMITS):
    source = tmp_path / "source"
    source.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    log = []
    stats = parse_dataset(str(source), str(tmp_path), declared, options or {}, limits, log.append)
    return stats, log, read_rows(str(tmp_path))


def rejected(tmp_path, content, declared=None, options=None, limits=LIMITS) -> str:
    with pytest.raises(DatasetRejected) as caught:
        parse(tmp_path, content, declared, options, limits)
    assert not os.path.exists(tmp_path / "rows.jsonl")  # a failed parse publishes no rows
    assert not os.path.exists(tmp_path / "rows.jsonl.partial")
    return str(caught.value)


def labelled_csv(rows: int, labels=("a", "b")) -> str:
    return "text,label\n" + "".join(f"text {n},{labels[n % len(labels)]}\n" for n in range(rows))


def test_empty_and_blank_files_are_rejected(tmp_path):
    assert "empty" in rejected(tmp_path, b"")
    assert "empty" in rejected(tmp_path, "\n \n\t\n")


def test_unbalanced_quote_is_rejected_naming_its_line(tmp_path):
    message = rejected(tmp_path, 'text,label\ngood,a\n"never closed,b\nmore,a\nrows,b\n')
    assert message.startswith("Line 3: a quoted field opened here is never closed")


def test_a_stray_quote_mid_field_is_a_bad_row(tmp_path):
    stats, _, rows = parse(tmp_path, labelled_csv(4) + '"quoted"then text,a\n')
    assert stats["rows"] == 4 and stats["bad_row_lines"][0]["line"] == 6
    assert stats["bad_row_lines"][0]["reason"].startswith("malformed CSV")


def test_binary_garbage_is_rejected_as_not_utf8_with_its_offset(tmp_path):
    message = rejected(tmp_path, b"text,label\n" + bytes(range(128, 256)) * 4)
    assert "not UTF-8" in message and "offset 11 (line 2)" in message


def test_latin1_text_is_rejected_at_the_offset_of_its_first_accent(tmp_path):
    message = rejected(tmp_path, "text,label\ncafé,a\n".encode("latin-1"))
    assert "offset 14 (line 2)" in message and "Save the file as UTF-8" in message


def test_nul_bytes_are_rejected_as_binary(tmp_path):
    assert "NUL byte at offset 13" in rejected(tmp_path, b"text,label\nab\x00c,a\n")


def test_csv_without_the_declared_formats_columns_lists_found_and_needed(tmp_path):
    message = rejected(tmp_path, "review,stars\ngood,5\nbad,1\n", declared="text-label")
    assert "'review', 'stars'" in message
    assert "text or sentence or content (or name it with text_column)" in message
    assert "label_column" in message


def test_label_column_option_naming_no_column_lists_the_columns(tmp_path):
    message = rejected(tmp_path, "text,label\na,b\n", options={"label_column": "sentiment"})
    assert "label_column is 'sentiment', but the columns are: 'text', 'label'" in message


def test_jsonl_with_unknown_keys_lists_every_formats_keys(tmp_path):
    message = rejected(tmp_path, '{"question": "q", "answer": "a"}\n')
    assert "'question', 'answer'" in message and "prompt-completion: prompt, completion" in message


def test_json_array_file_is_rejected_asking_for_json_lines(tmp_path):
    assert "JSON Lines" in rejected(tmp_path, '[{"text": "a", "label": "b"}]')


def test_a_line_over_the_limit_is_rejected_naming_the_setting(tmp_path):
    message = rejected(tmp_path, labelled_csv(4) + "x" * 5000 + ",a\n")
    assert message.startswith("Line 6 is longer than 1000 bytes") and "INFER_DATASET_MAX_LINE_BYTES" in message


def test_a_quoted_field_over_many_short_lines_cannot_pass_the_line_limit(tmp_path):
    message = rejected(tmp_path, 'text,label\n"' + "short line\n" * 200 + '",a\n' + labelled_csv(4)[11:])
    assert "From line 2, a field runs past 1000 bytes" in message


def test_more_rows_than_the_limit_are_rejected(tmp_path):
    limits = DatasetLimits(max_rows=10, max_line_bytes=1000, max_image_pixels=10, max_label_count=5, archive=ARCHIVE)
    assert "INFER_DATASET_MAX_ROWS" in rejected(tmp_path, labelled_csv(11), limits=limits)
    assert parse(tmp_path, labelled_csv(10), limits=limits)[0]["rows"] == 10


def test_mostly_bad_rows_ask_whether_the_format_is_right(tmp_path):
    message = rejected(tmp_path, labelled_csv(3) + "no label,\n" * 4)
    assert "4 of 7 rows are bad" in message and "right format" in message


def test_a_single_label_is_rejected(tmp_path):
    assert "only the label 'a'" in rejected(tmp_path, labelled_csv(5, labels=("a",)))


def test_more_labels_than_the_limit_are_rejected(tmp_path):
    assert "INFER_DATASET_MAX_LABELS" in rejected(tmp_path, labelled_csv(12, labels="abcdef"))


def test_a_label_longer_than_a_name_is_rejected(tmp_path):
    message = rejected(tmp_path, labelled_csv(4) + "some text," + "x" * 201 + "\n")
    assert "201 characters" in message and "label column" in message


def test_unknown_declared_format_lists_the_formats(tmp_path):
    message = rejected(tmp_path, labelled_csv(4), declared="csv")
    assert "Unknown format 'csv'" in message and "text-label" in message and "image-folders" in message


@pytest.mark.parametrize(("declared", "wanted"), [("chat", "JSON Lines"), ("image-folders", "a zip archive")])
def test_declared_format_contradicting_the_file_is_rejected(tmp_path, declared, wanted):
    message = rejected(tmp_path, labelled_csv(4), declared=declared)
    assert f"declared as {declared}, which comes as {wanted}, but the file is CSV" in message


def png_bytes(size, mode="RGB") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


def zip_bytes(tmp_path, members) -> bytes:
    """members: {name or ZipInfo: data}."""
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("name", "problem"), [
    ("../escape.png", "path leaving the archive '../escape.png'"),
    ("/etc/cron.d/job.png", "absolute path '/etc/cron.d/job.png'"),
    (symlink_member("cat/link.png"), "symbolic link 'cat/link.png'"),
])
def test_zip_with_traversal_absolute_path_or_link_is_rejected_before_extracting(tmp_path, name, problem):
    content = zip_bytes(tmp_path, {"cat/1.png": png_bytes((4, 4)), "dog/1.png": png_bytes((4, 4)), name: b"x"})
    work = tmp_path / "work"
    work.mkdir()
    assert problem in rejected(work, content)
    assert not os.path.exists(work / "images") and not os.path.exists(tmp_path / "escape.png")


def test_zip_bomb_is_rejected_with_the_archive_check(tmp_path):
    content = zip_bytes(tmp_path, {"cat/1.png": png_bytes((4, 4)), "dog/1.png": bytes(5_000_000)})
    assert "looks like a zip bomb" in rejected(tmp_path, content)


def test_zip_declared_as_a_text_format_is_rejected(tmp_path):
    content = zip_bytes(tmp_path, {"cat/1.png": png_bytes((4, 4)), "dog/1.png": png_bytes((4, 4))})
    message = rejected(tmp_path, content, declared="text-label")
    assert "declared as text-label, which comes as CSV or JSON Lines, but the file is a zip archive" in message


def test_zip_of_images_outside_label_folders_is_rejected(tmp_path):
    content = zip_bytes(tmp_path, {"1.png": png_bytes((4, 4)), "2.png": png_bytes((4, 4))})
    assert "not in label folders (such as '1.png')" in rejected(tmp_path, content)


def test_zip_without_images_is_rejected(tmp_path):
    assert "no images" in rejected(tmp_path, zip_bytes(tmp_path, {"cat/": b"", "__MACOSX/._x": b"junk"}))


def test_zip_non_images_oversized_and_damaged_images_are_bad_rows(tmp_path):
    good = {f"{label}/{n}.png": png_bytes((8, 8)) for label in ("cat", "dog") for n in range(3)}
    bomb = png_bytes((5000, 5000), mode="1")  # 25 million pixels in a few kilobytes
    content = zip_bytes(tmp_path, {**good, "cat/notes.txt": b"not an image", "dog/huge.png": bomb,
                                   "dog/cut.png": png_bytes((8, 8))[:60], "loose.png": png_bytes((8, 8))})
    work = tmp_path / "work"
    work.mkdir()
    stats, _, rows = parse(work, content)
    assert stats["rows"] == 6 and stats["labels"] == {"cat": 3, "dog": 3}
    reasons = {entry["line"]: entry["reason"] for entry in stats["bad_row_lines"]}
    assert set(reasons) == {"cat/notes.txt", "dog/huge.png", "dog/cut.png", "loose.png"}
    assert reasons["cat/notes.txt"].startswith("not an image")
    assert reasons["dog/huge.png"] == "5000x5000 is 25000000 pixels; the limit is 10000 (INFER_MAX_IMAGE_PIXELS)"
    assert reasons["loose.png"] == "not directly inside a label folder (<label>/<image>)"
    assert sorted(os.listdir(work / "images" / "dog")) == ["0.png", "1.png", "2.png"]  # bad files are not kept


def test_zip_with_one_label_folder_is_rejected(tmp_path):
    content = zip_bytes(tmp_path, {f"cat/{n}.png": png_bytes((4, 4)) for n in range(3)})
    assert "only the label 'cat'" in rejected(tmp_path, content)


def run_child(work_dir, source, max_memory_mb=2048, max_image_pixels=10_000) -> tuple[int, dict | None]:
    limits = {"max_rows": 1000, "max_line_bytes": 1000, "max_image_pixels": max_image_pixels, "max_label_count": 5,
              "max_archive_bytes": 10**8, "max_members": 100, "max_uncompressed_bytes": 10**8, "max_ratio": 100,
              "max_memory_mb": max_memory_mb}
    (work_dir / "parse_request.json").write_text(json.dumps(
        {"source": str(source), "format": None, "options": {}, "limits": limits}))
    finished = subprocess.run([sys.executable, "-m", "training.datasets.child", str(work_dir)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    result_path = work_dir / "parse_result.json"
    return finished.returncode, json.loads(result_path.read_text()) if result_path.exists() else None


def test_child_writes_a_ready_result_with_stats_and_a_timestamped_log(tmp_path):
    (tmp_path / "source").write_text(labelled_csv(6))
    code, result = run_child(tmp_path, tmp_path / "source")
    assert code == 0 and result["status"] == "ready" and result["format"] == "text-label"
    assert result["stats"]["rows"] == 6 and result["stats"]["labels"] == {"a": 3, "b": 3}
    assert result["message"] == "Ready: 6 rows, 2 labels"
    assert result["log"][0]["message"] == f"Reading {len(labelled_csv(6))} bytes as CSV"
    assert result["log"][0]["timestamp"].endswith("Z")
    assert len(read_rows(str(tmp_path))) == 6
    assert not os.path.exists(tmp_path / "parse_result.json.partial")


def test_child_writes_a_failed_result_with_what_to_fix(tmp_path):
    (tmp_path / "source").write_text(labelled_csv(6, labels=("a",)))
    code, result = run_child(tmp_path, tmp_path / "source")
    assert code == 0 and result["status"] == "failed" and result["stats"] is None
    assert "only the label 'a'" in result["message"]
    assert result["log"][-1]["message"] == "Failed: " + result["message"]


def test_child_turns_an_unexpected_error_into_a_failed_result(tmp_path):
    code, result = run_child(tmp_path, tmp_path / "missing")  # open() fails: not a DatasetRejected
    assert code == 0 and result["status"] == "failed"
    assert result["message"].startswith("The dataset could not be parsed: an internal error (FileNotFoundError)")
    assert result["log"][-1]["message"].startswith("Internal error: FileNotFoundError")


def blank_png(width: int, height: int) -> bytes:
    """A grayscale PNG of zeros, written chunk by chunk: a few kilobytes that decode to width x height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(bytes(width + 1)) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_child_caps_its_memory_so_an_image_decoding_past_the_cap_ends_it_without_a_result(tmp_path):
    # 81 million pixels: within the pixel limit and PIL's bomb guard, but 81 MB decoded, past an 80 MB cap.
    members = {"cat/1.png": png_bytes((4, 4)), "dog/1.png": png_bytes((4, 4)), "dog/big.png": blank_png(9000, 9000)}
    (tmp_path / "source").write_bytes(zip_bytes(tmp_path, members))
    code, result = run_child(tmp_path, tmp_path / "source", max_memory_mb=80, max_image_pixels=10**8)
    assert code != 0 and result is None
    # With room to decode it, the same dataset is ready.
    code, result = run_child(tmp_path, tmp_path / "source", max_memory_mb=2048, max_image_pixels=10**8)
    assert code == 0 and result["status"] == "ready" and result["stats"]["rows"] == 3
