"""Output safety by kind: what each writer accepts as its own (resumable) output, and what it refuses.

The hostile cases (output == input, links, foreign files, a held lock) are in test_hostile.py;
these are the accepting side and the per-kind content checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr_distill.jsonl import (
    OutputLockedError,
    UnsafeOutputError,
    atomic_write_jsonl,
    lock_holder,
    lock_path_for,
    output_lock,
)
from asr_distill.outputs import MARKER_NAME, OUTPUT_KINDS, check_output, claim_output, guard_output

LABEL = {
    "id": "a",
    "audio_filepath": "a.wav",
    "offset": 0.0,
    "duration": 1.0,
    "text": "hi",
    "provenance": {"teacher": "tiny.en"},
    "tokens": [],
}
SKIP = {"id": "b", "audio_filepath": "b.wav", "reason": "silent", "message": "b.wav is silent"}
PSEUDO = {"id": "a", "text": "hi", "teacher_text": "hi", "drop_reasons": [], "provenance": {}}


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(path, records)
    return path


@pytest.mark.parametrize("content", ["", "\n", None], ids=["empty", "blank", "missing"])
def test_new_or_empty_label_file_is_fine(tmp_path, content):
    out = tmp_path / "new" / "labels.jsonl"
    if content is not None:
        out.parent.mkdir()
        out.write_text(content)
    assert check_output(out, kind="labels") == out


def test_our_labels_and_skips_resume_even_with_a_torn_last_line(tmp_path):
    out = _jsonl(tmp_path / "labels.jsonl", [LABEL, SKIP])
    with open(out, "a") as f:
        f.write('{"id": "c", "te')  # a kill mid-write: the writer cuts it
    assert check_output(out, kind="labels") == out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello\n", "line 1 is not JSON"),
        ('{"id": "a"}\n', "line 1 is not a teacher label"),
        (json.dumps(PSEUDO) + "\n", "line 1 is not a teacher label"),
    ],
)
def test_label_file_that_is_not_ours_is_refused(tmp_path, text, words):
    out = tmp_path / "labels.jsonl"
    out.write_text(text)
    with pytest.raises(UnsafeOutputError, match=words):
        check_output(out, kind="labels")
    assert check_output(out, kind="labels", force=True) == out
    assert out.read_text() == text  # checking writes nothing


def test_file_kind_refuses_a_folder_and_folder_kind_a_file(tmp_path):
    with pytest.raises(UnsafeOutputError, match="is a folder"):
        check_output(tmp_path, kind="labels")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UnsafeOutputError, match="is a file"):
        check_output(tmp_path / "f", kind="filter_dir")


def test_special_file_is_refused(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeOutputError, match="not a regular file"):
        check_output(fifo, kind="labels")


def test_filter_folder_written_before_markers_is_ours(tmp_path):
    d = tmp_path / "filter"
    _jsonl(d / "kept.jsonl", [PSEUDO])
    _jsonl(d / "dropped.jsonl", [])
    (d / "filter_report.json").write_text(json.dumps({"kept": 1}))
    (d / "calibration.png").write_bytes(b"\x89PNG\r\n\x1a\n....")
    (d / ".kept.jsonl.abc.tmp").write_text("half")  # an atomic write cut short
    assert check_output(d, kind="filter_dir") == d
    (d / "calibration.png").write_text("not an image")
    with pytest.raises(UnsafeOutputError, match="calibration.png: it is not a PNG"):
        check_output(d, kind="filter_dir")


def test_marked_folder_may_hold_other_files_but_our_names_are_still_checked(tmp_path):
    d = tmp_path / "review"
    claim_output(d, "review_dir")
    (d / "NOTES.txt").write_text("the reviewer's notes")
    assert check_output(d, kind="review_dir") == d
    (d / "review_audit.jsonl").write_text('{"not": "audit"}\n')
    with pytest.raises(UnsafeOutputError, match="review_audit.jsonl: line 1 is not a review audit"):
        check_output(d, kind="review_dir")


def test_evaluate_folder_with_one_subfolder_per_model(tmp_path):
    d = tmp_path / "eval"
    _jsonl(d / "tiny.en" / "hyps.jsonl", [{"id": "a", "hyp": "x"}])
    (d / "tiny.en" / "result.json").write_text("{}")
    (d / "summary.json").write_text("{}")
    (d / "table.md").write_text("| model | WER |\n")
    assert check_output(d, kind="evaluate_dir") == d
    (d / "tiny.en" / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(UnsafeOutputError, match="photo.jpg: this step does not write it"):
        check_output(d, kind="evaluate_dir")


def test_symlinked_folder_is_resolved_and_checked(tmp_path):
    target = tmp_path / "big_disk" / "run"
    _jsonl(target / "kept.jsonl", [PSEUDO])
    (tmp_path / "run").symlink_to(target, target_is_directory=True)
    assert check_output(tmp_path / "run", kind="filter_dir") == tmp_path / "run"
    (target / "kept.jsonl").write_text("someone's file\n")
    with pytest.raises(UnsafeOutputError, match="kept.jsonl"):
        check_output(tmp_path / "run", kind="filter_dir")


def test_exported_student_is_recognised_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    ours, other = tmp_path / "student.pt", tmp_path / "other.pt"
    torch.save({"dims": {"n_mels": 80}, "model_state_dict": {"w": torch.zeros(1)}, "asr_distill": {}}, ours)
    torch.save({"weights": torch.zeros(1)}, other)
    assert check_output(ours, kind="export") == ours
    with pytest.raises(UnsafeOutputError, match="not a student exported by this toolkit"):
        check_output(other, kind="export")
    (tmp_path / "notes.pt").write_text("text")
    with pytest.raises(UnsafeOutputError, match="not a torch checkpoint"):
        check_output(tmp_path / "notes.pt", kind="export")


def test_unknown_kind_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="unknown output kind 'lables'"):
        check_output(tmp_path / "x", kind="lables")
    assert {
        "labels",
        "filter_dir",
        "review_dir",
        "export",
        "evaluate_dir",
        "report_dir",
        "train_dir",
        "run_dir",
    } <= set(OUTPUT_KINDS)


def test_guard_marks_a_folder_and_locks_it_for_the_block(tmp_path):
    d = tmp_path / "filter"
    with guard_output(d, kind="filter_dir") as out:
        assert out == d and json.loads((d / MARKER_NAME).read_text()) == {"kind": "filter_dir"}
        holder = lock_holder(lock_path_for(d, folder=True))
        assert holder is not None and holder.startswith("pid ")
        with pytest.raises(OutputLockedError, match="being written by another process"):
            with guard_output(d, kind="filter_dir"):
                pass
    assert lock_holder(lock_path_for(d, folder=True)) is None
    assert check_output(d, kind="filter_dir") == d  # marker and lock file are ours


def test_output_lock_is_the_one_for_files_and_folders(tmp_path):
    f = tmp_path / "labels.jsonl"
    with output_lock(f, folder=False) as lock:
        assert lock == tmp_path / "labels.jsonl.lock"
        assert lock_holder(lock) is not None
    with output_lock(tmp_path / "run", folder=True) as lock:
        assert lock == tmp_path / "run" / ".lock"
    assert lock.read_text() == ""  # the holder's name is cleared on release
