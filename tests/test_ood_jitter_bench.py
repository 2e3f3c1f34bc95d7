"""benchmarks/ood_jitter.py: the bar's verdict per copy of the test set, and when copies disagree."""

from __future__ import annotations

import sys

from asr_distill.testing.bench import load_benchmark

oj = load_benchmark("ood_jitter")


def _model(name: str, wer: float, insertions: int) -> dict:
    return {
        "model": name,
        "wer": wer,
        "ci": {"low": wer - 1, "high": wer + 1},
        "score": {"insertions": insertions, "ref_words": 792},
    }


def _copy(student_wer: float, p: float, insertions: int = 2) -> dict:
    return {
        "models": [
            _model("tiny.en", 3.16, 4),
            _model("teacher", 5.06, 9),
            _model("s0", student_wer, insertions),
        ],
        "comparisons": [{"a": "s0", "b": "tiny.en", "p_value": p}],
    }


def test_each_copy_gets_the_generalisation_bar_and_a_flip_is_named():
    copies = {
        "as_recorded": oj.copy_figures(_copy(3.67, 0.83), ["s0"]),  # 0.51 worse: fails
        "shift_5ms": oj.copy_figures(_copy(3.41, 0.70), ["s0"]),  # 0.25 worse: passes
        "noise_60db": oj.copy_figures(_copy(3.29, 0.60, insertions=5), ["s0"]),  # more insertions: fails
    }
    bars = {c: f["students"]["s0"]["bar"] for c, f in copies.items()}
    assert [b["pass"] for b in bars.values()] == [False, True, False]
    assert bars["as_recorded"]["delta_vs_tiny_en"] == 0.51
    assert copies["shift_5ms"]["tiny_en"]["wer"] == 3.16
    assert oj.flips(copies, ["s0"]) == {
        "s0": {"verdicts": {"as_recorded": False, "shift_5ms": True, "noise_60db": False}, "flips": True}
    }


def test_significantly_worse_fails_even_within_the_margin():
    fig = oj.copy_figures(_copy(3.40, 0.99), ["s0"])["students"]["s0"]
    assert fig["bar"]["significantly_worse"] and not fig["bar"]["pass"]


def test_missing_students_are_skipped_by_path_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    an4 = tmp_path / "an4"
    an4.mkdir()
    (an4 / "test.jsonl").write_text("")
    out = tmp_path / "ood.json"
    gone = tmp_path / "gone.pt"
    argv = ["ood_jitter.py", "--an4", str(an4), "--students", f"s0={gone}", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    oj.main()
    said = capsys.readouterr().out
    assert said.startswith("skipped: no student checkpoint") and str(gone) in said
    assert not out.exists()


def test_rows_hold_every_model_of_every_copy_with_the_same_keys():
    copies = {"as_recorded": oj.copy_figures(_copy(3.67, 0.83), ["s0"])}
    rows = oj.rows(copies)
    assert [r["model"] for r in rows] == ["tiny.en", "teacher", "s0"]
    assert len({tuple(r) for r in rows}) == 1  # one column set for the table
    assert rows[0]["pass"] is None and rows[2]["pass"] is False and rows[2]["delta_vs_tiny_en"] == 0.51
