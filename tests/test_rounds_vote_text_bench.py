"""benchmarks/rounds_vote_text.py: the vote's text measured against the teacher's on a constructed run."""

from __future__ import annotations

import json

from asr_distill.testing.bench import load_benchmark

vt = load_benchmark("rounds_vote_text")

REFS = ["the cat sat", "a dog ran", "we go home", "it is red"]
TEACHER = ["the bat sat", "a dog ran", "we go hum", "it is bed"]
SECOND = ["the cat sat", "a dog ran", "we go home", "it is bed"]
STUDENT = ["the cat sat", "a fog ran", "we go home", "it is red"]


def _write(path, texts, key="text"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps({"id": f"u{i}", "audio_filepath": f"/a/u{i}.wav", key: t}) + "\n"
            for i, t in enumerate(texts)
        )
    )


def test_the_vote_fixes_words_two_voters_of_three_heard_and_kept_labels_are_measured_apart(tmp_path):
    run = tmp_path / "run"
    _write(run / "data" / "train.jsonl", REFS)
    _write(tmp_path / "teacher.jsonl", TEACHER)
    _write(tmp_path / "second.jsonl", SECOND)
    _write(run / "round2" / "label_student" / "labels.jsonl", STUDENT)
    _write(run / "round2" / "filter" / "kept.jsonl", TEACHER[:2])  # u0, u1 kept
    (run / "pipeline_config.json").write_text(json.dumps({"label": {"labels": None, "second_labels": None}}))
    out = vt.measure_run(run, tmp_path / "teacher.jsonl", tmp_path / "second.jsonl")
    (r,) = out["rounds"]
    assert r["round"] == 2 and r["voters"] == 3
    # teacher: 3 errors in 12 words; vote: "cat", "home" fixed, "dog" kept (teacher + second), "bed" stays
    assert r["all"]["teacher"]["wer"] == 25.0
    assert r["all"]["vote"]["wer"] == round(100 * 1 / 12, 4)
    assert r["all"]["student"]["wer"] == round(100 * 1 / 12, 4)
    assert r["kept"]["labels"] == 2 and r["kept"]["teacher"]["wer"] == round(100 / 6, 4)
    assert r["kept"]["vote"]["wer"] == 0.0
