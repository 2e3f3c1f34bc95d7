"""Packed labeling through the label stage: real tiny.en on the AN4 fixture clips, one speaker.

The fixture's eight clips and a broken file, given no speaker, are planned into two windows;
each window's label must come back as one label per clip, resume without decoding again, and leave
out (with its reason) a member whose audio is unusable.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import fixture_lines, write_manifest

from asr_distill.jsonl import read_jsonl
from asr_distill.label import LabelRun, skips_path
from asr_distill.label_job import Placement, label_job
from asr_distill.metrics import word_error_rate
from asr_distill.pack_job import label_packed_to_file, windows_dir
from asr_distill.testing.cli import label_command

TEXT = {"capture_output": True, "text": True, "timeout": 300}


def _manifest(tmp_path: Path, extra: list[dict] = ()) -> Path:
    lines = [{k: v for k, v in d.items() if k != "speaker"} for d in fixture_lines()]
    return write_manifest(tmp_path / "in.jsonl", lines[:4] + list(extra) + lines[4:])


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_teacher):
    tmp = tmp_path_factory.mktemp("packed")
    bad = tmp / "broken.wav"
    bad.write_bytes(b"RIFF not audio at all")
    broken = {"id": "broken", "audio_filepath": str(bad), "duration": 1.0, "text": "x"}
    manifest = _manifest(tmp, [broken])
    out = tmp / "labels.jsonl"
    stats = label_packed_to_file(manifest, out, LabelRun(tiny_teacher, batch_size=8))
    return manifest, out, stats


def test_each_utterance_gets_its_own_label_from_the_shared_window(packed):
    manifest, out, stats = packed
    labels = {d["id"]: d for d in read_jsonl(out)}
    refs = {d["id"]: d["text"] for d in read_jsonl(manifest)}
    assert set(labels) == set(refs) - {"broken"} and stats.labeled == 8 and stats.skipped == 1
    windows = [d for d in read_jsonl(windows_dir(out) / "windows.jsonl") if "members" in d]
    in_window = {m[0] for w in windows for m in w["members"]}
    assert in_window == set(labels) and sum(len(w["members"]) for w in windows) == 8  # not "broken"
    for i, d in labels.items():
        packed_in = d["provenance"]["decoding"].get("packed")
        assert (packed_in is not None) == (i in in_window)
        assert d["ref_text"] == refs[i] and d["text"].strip()
        assert all(0 <= w["start"] <= w["end"] <= d["duration"] for w in d["words"])
        assert "".join(t["text"] for t in d["tokens"]).strip() == d["text"]
    hyp = [labels[i]["text"] for i in sorted(labels)]
    assert word_error_rate([refs[i] for i in sorted(labels)], hyp).wer < 15.0


def test_an_unusable_member_is_skipped_with_its_reason_and_the_window_goes_on(packed):
    _, out, _ = packed
    (skip,) = read_jsonl(skips_path(out))
    assert skip["id"] == "broken" and skip["reason"] == "unreadable"
    assert "left out of window" in skip["message"]


def test_a_rerun_resumes_and_a_lost_output_is_rebuilt_from_the_window_labels(packed, tiny_teacher):
    manifest, out, _ = packed
    before = out.read_text()
    again = label_packed_to_file(manifest, out, LabelRun(tiny_teacher, batch_size=8))
    assert again.labeled == 0 and again.skipped == 0 and again.already_done == 9
    window_labels = windows_dir(out) / "labels.jsonl"
    decoded = window_labels.read_text()
    out.unlink()
    skips_path(out).unlink()
    rebuilt = label_packed_to_file(manifest, out, LabelRun(tiny_teacher, batch_size=8))
    assert rebuilt.labeled == 8 and window_labels.read_text() == decoded  # nothing decoded again
    assert sorted(out.read_text().splitlines()) == sorted(before.splitlines())


def test_packing_refuses_what_would_cut_a_speaker_apart(tmp_path, tiny_teacher):
    manifest = _manifest(tmp_path)
    run = LabelRun(tiny_teacher)
    with pytest.raises(ValueError, match="without --shard"):
        label_packed_to_file(manifest, tmp_path / "o.jsonl", LabelRun(tiny_teacher, shard=(0, 2)))
    with pytest.raises(ValueError, match="at most 30"):
        label_packed_to_file(manifest, tmp_path / "o.jsonl", run, max_s=45)
    with pytest.raises(ValueError, match="one process"):
        label_job(manifest, tmp_path / "o.jsonl", run, Placement(workers=2), pack_s=30)
    assert not (tmp_path / "o.jsonl").exists()


def test_the_cli_labels_packed_and_refuses_packing_with_the_ray_engine(tmp_path):
    manifest = _manifest(tmp_path)
    out = tmp_path / "o.jsonl"
    refused = subprocess.run([*label_command(manifest, out), "--pack-s", "30", "--engine", "ray"], **TEXT)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: packed")
    assert not out.exists()
    done = subprocess.run([*label_command(manifest, out), "--pack-s", "30", "--no-progress"], **TEXT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("labeled 8 (already done 0), skipped 0") and "label WER" in done.stdout
    assert len(out.read_text().splitlines()) == 8 and (windows_dir(out) / "windows.jsonl").is_file()


def test_a_member_its_window_gave_no_words_is_decoded_alone(packed, tiny_teacher, tmp_path):
    """Whisper now and then skips a whole sentence of a window: that member is decoded again alone."""
    manifest, out, _ = packed
    work = windows_dir(tmp_path / "labels.jsonl")
    shutil.copytree(windows_dir(out), work)
    window = next(d for d in read_jsonl(work / "windows.jsonl") if "members" in d)
    lost = window["members"][1][0]

    def nearest(w: dict) -> str:  # the member a word goes to: the span nearest its middle
        t = (w["start"] + w["end"]) / 2
        return min(window["members"], key=lambda m: max(m[1] - t, t - m[2], 0.0))[0]

    lines = []
    for d in read_jsonl(work / "labels.jsonl"):
        if d["id"] == window["id"]:  # as if the teacher had heard nothing in the second member's span
            d["words"] = [w for w in d["words"] if nearest(w) != lost]
        lines.append(d)
    write_manifest(work / "labels.jsonl", lines)
    stats = label_packed_to_file(manifest, tmp_path / "labels.jsonl", LabelRun(tiny_teacher, batch_size=8))
    labels = {d["id"]: d for d in read_jsonl(tmp_path / "labels.jsonl")}
    assert stats.labeled == 8 and set(labels) == {d["id"] for d in read_jsonl(out)}
    packed_as = labels[lost]["provenance"]["decoding"]["packed"]
    assert packed_as == {"window": window["id"], "decoded_alone": "no words in its window"}
    assert labels[lost]["text"].strip() and labels[lost]["words"]
    assert [d["id"] for d in read_jsonl(work / "alone.jsonl")] == [lost]
    others = [m[0] for m in window["members"] if m[0] != lost]
    assert all(labels[i]["provenance"]["decoding"]["packed"]["window"] == window["id"] for i in others)
