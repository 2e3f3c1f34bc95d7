"""Evaluation: scoring, bootstrap intervals, paired comparisons, breakdowns, and the CLI.

Per-utterance counts are checked on pairs with known errors, and ``asr-distill evaluate``
runs once for real on the AN4 fixture.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from asr_distill.evaluate import (
    IN_DOMAIN,
    REGRESSION_MARK,
    Scoring,
    bootstrap_wer,
    corpus_score,
    duration_bucket,
    find_regressions,
    load_evaluation,
    load_suite,
    paired_bootstrap,
    parse_model_spec,
    parse_set_spec,
    per_duration,
    per_speaker,
    resolve_baselines,
    score_utterances,
)
from asr_distill.metrics import word_error_rate

# (reference, hypothesis, substitutions, deletions, insertions, reference words)
KNOWN = [
    ("the cat sat on the mat", "the cat sat on the mat", 0, 0, 0, 6),
    ("the cat sat on the mat", "the bat sat on mat", 1, 1, 0, 6),
    ("order number four two", "order number four two two", 0, 0, 1, 4),
    ("hello world", "", 0, 2, 0, 2),
    ("", "thank you for watching", 0, 0, 4, 0),  # silence: every hallucinated word is an insertion
    ("enter g m e f", "enter GMEF", 0, 0, 0, 5),  # format_insensitive: spelled letters agree
]


def _pairs(n: int, error_words: tuple[int, ...], seed: int, words: int = 10) -> tuple[list[str], list[str]]:
    """``n`` ten-word references; each hypothesis substitutes a random count from ``error_words``."""
    rng = random.Random(seed)
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(vocab) for _ in range(words)]
        hyp = list(ref)
        for j in rng.sample(range(words), rng.choice(error_words)):
            hyp[j] = "zulu"
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


@pytest.mark.parametrize("ref,hyp,s,d,i,n", KNOWN)
def test_known_pairs_are_counted_exactly(ref, hyp, s, d, i, n):
    (u,) = score_utterances([ref], [hyp], "format_insensitive")
    assert (u.substitutions, u.deletions, u.insertions, u.ref_words) == (s, d, i, n)
    ops = [op for op, _, _ in u.alignment]
    assert ops.count("substitute") <= s and ("delete" in ops) == (d > 0) and ("insert" in ops) == (i > 0)


def test_corpus_figures_match_metrics():
    refs = [k[0] for k in KNOWN]
    hyps = [k[1] for k in KNOWN]
    scores = score_utterances(refs, hyps, "format_insensitive")
    mine = corpus_score(scores, "format_insensitive")
    theirs = word_error_rate(refs, hyps, "format_insensitive")
    assert mine == theirs
    errors = sum(k[2] + k[3] + k[4] for k in KNOWN)
    words = sum(k[5] for k in KNOWN)
    assert sum(u.errors for u in scores) == errors
    assert mine.wer == pytest.approx(100 * errors / words)


def test_mismatched_lengths_and_unknown_normaliser_are_refused():
    with pytest.raises(ValueError, match="pair up"):
        score_utterances(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown normaliser"):
        score_utterances(["a"], ["a"], "nope")


def test_interval_contains_the_estimate_and_narrows_with_more_data():
    widths = []
    for n in (40, 640):
        refs, hyps = _pairs(n, (0, 0, 1, 2, 4), seed=n)
        scores = score_utterances(refs, hyps, "whisper_basic")
        wer = corpus_score(scores, "whisper_basic").wer
        ci = bootstrap_wer(scores, resamples=500, seed=1)
        assert ci.low <= wer <= ci.high
        assert ci.low < ci.high
        widths.append(ci.high - ci.low)
    # the width shrinks like 1/sqrt(n): 16x the data, about a quarter of the width
    assert widths[1] < 0.5 * widths[0]


def test_bootstrap_is_reproducible_with_a_seed():
    refs, hyps = _pairs(50, (0, 1, 3), seed=3)
    scores = score_utterances(refs, hyps, "whisper_basic")
    assert bootstrap_wer(scores, resamples=200, seed=7) == bootstrap_wer(scores, resamples=200, seed=7)


def test_paired_bootstrap_detects_a_clearly_better_model_and_not_a_tie():
    refs, good = _pairs(120, (0, 0, 1), seed=11)
    _, bad = _pairs(120, (1, 2, 3), seed=11)  # same references (same seed), more errors
    a = score_utterances(refs, good, "whisper_basic")
    b = score_utterances(refs, bad, "whisper_basic")
    c = paired_bootstrap(a, b, names=("good", "bad"), resamples=500)
    assert c.delta < 0 and c.p_value < 0.05 and c.a_better
    assert c.delta_ci.high < 0
    reverse = paired_bootstrap(b, a, names=("bad", "good"), resamples=500)
    assert not reverse.a_better and reverse.p_value > 0.95
    tie = paired_bootstrap(a, a, names=("good", "good2"), resamples=500)
    assert tie.delta == 0 and not tie.a_better


def test_breakdowns_partition_the_test_set():
    refs, hyps = _pairs(30, (0, 1, 2), seed=5)
    durations = [0.5 + 1.1 * i for i in range(30)]  # 0.5 s to 32.4 s
    speakers = [f"spk{i % 3}" for i in range(30)]
    scores = score_utterances(refs, hyps, "whisper_basic", durations=durations, speakers=speakers)
    total = corpus_score(scores, "whisper_basic")
    for groups in (per_speaker(scores), per_duration(scores)):
        assert sum(g.utterances for g in groups) == 30
        assert sum(g.errors for g in groups) == total.substitutions + total.deletions + total.insertions
    assert [g.name for g in per_speaker(scores)] == ["spk0", "spk1", "spk2"]
    names = [g.name for g in per_duration(scores)]
    assert names[0] == "0-2s" and names[-1] == ">30s"
    assert duration_bucket(3.0) == "2-4s" and duration_bucket(45.0) == ">30s"


def test_model_specs_name_rows():
    assert parse_model_spec("student=runs/x/student.pt") == ("student", "runs/x/student.pt")
    assert parse_model_spec("tiny.en") == ("tiny.en", "tiny.en")


def test_regressions_are_flagged_where_a_student_is_significantly_worse_and_nowhere_else():
    """Known answer: the same as its baseline in domain, far worse on one set, better on another."""
    refs, good = _pairs(120, (0, 0, 1), seed=11)
    _, bad = _pairs(120, (1, 2, 3), seed=11)
    base = score_utterances(refs, good, "whisper_basic")
    worse = score_utterances(refs, bad, "whisper_basic")
    scores = {
        IN_DOMAIN: {"tiny": base, "student": base},
        "ood": {"tiny": base, "student": worse},
        "other": {"tiny": worse, "student": base},
    }
    scoring = Scoring("whisper_basic", (), resamples=300)
    (r,) = find_regressions(scores, {"student": "tiny"}, scoring)
    assert (r.set, r.model, r.baseline) == ("ood", "student", "tiny")
    assert r.wer > r.baseline_wer and r.delta == pytest.approx(r.wer - r.baseline_wer)
    assert 0 < r.delta_ci.low <= r.delta <= r.delta_ci.high and r.p_value < 0.05
    assert find_regressions(scores, {}, scoring) == []  # no baseline, nothing to judge against


def test_test_set_specs_and_baseline_names_are_checked():
    assert parse_set_spec("an4=../an4/test.jsonl") == ("an4", "../an4/test.jsonl")
    assert parse_set_spec("test.jsonl") == (IN_DOMAIN, "test.jsonl")
    with pytest.raises(ValueError, match="NAME=MANIFEST"):
        parse_set_spec("=x.jsonl")
    pairs = [("tiny", "tiny.en"), ("student", "s.pt")]
    assert resolve_baselines(pairs, {"student": "tiny"}) == {"student": "tiny"}
    with pytest.raises(ValueError, match="'base' is not a model evaluated"):
        resolve_baselines(pairs, {"student": "base"})


def test_a_student_checkpoint_names_the_model_it_started_from(tmp_path):
    import torch

    adapted, cut = tmp_path / "adapted.pt", tmp_path / "cut.pt"
    torch.save(
        {"asr_distill": {"training_config": {"init": "tiny.en"}, "teacher": {"name": "base"}}}, adapted
    )
    torch.save({"asr_distill": {"training_config": {"init": "teacher"}, "teacher": {"name": "base"}}}, cut)
    pairs = [("teacher", "base"), ("tiny", "tiny.en"), ("adapted", str(adapted)), ("cut", str(cut))]
    assert resolve_baselines(pairs, None) == {"adapted": "tiny", "cut": "teacher"}


def _fake_transcribe(model, manifest, *, name=None, **_):
    """Hypotheses without decoding: the references, with every word wrong for "student" on "ood"."""
    from pathlib import Path

    from asr_distill.records import Transcription

    rows = [json.loads(x) for x in Path(manifest).read_text().splitlines()]
    refs = tuple(r["text"] for r in rows)
    hyps = tuple(" ".join(["zulu"] * 10) if "ood" in str(manifest) and name == "student" else r for r in refs)
    n = len(rows)
    return Transcription(
        name, str(model), 1, tuple(r["id"] for r in rows), refs, hyps, (1.0,) * n, (None,) * n, n, 1
    )


def test_named_sets_through_evaluate_with_a_regression_and_an_absent_set(tmp_path, monkeypatch):
    import asr_distill.evaluate as ev_module
    from asr_distill.evaluate import evaluate

    monkeypatch.setattr(ev_module, "transcribe", _fake_transcribe)
    refs, _ = _pairs(40, (0,), seed=3)
    for name in ("test", "ood"):
        lines = [
            json.dumps({"id": f"{name}{i}", "audio_filepath": "x.wav", "text": r}) for i, r in enumerate(refs)
        ]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    sets = {
        "ood": tmp_path / "ood.jsonl",
        "absent": tmp_path / "absent.jsonl",
        IN_DOMAIN: tmp_path / "test.jsonl",
    }
    out = tmp_path / "eval"
    (tmp_path / "s.pt").write_bytes(b"not read: transcribe is faked")
    models = ["base", f"student={tmp_path / 's.pt'}"]
    suite = evaluate(models, sets, out, scoring=Scoring(resamples=200), baselines={"student": "base"})
    assert list(suite.sets) == [IN_DOMAIN, "ood"] and "does not exist" in suite.skipped["absent"]
    assert [(r.set, r.model) for r in suite.regressions] == [("ood", "student")]
    assert suite.sets["ood"].results[1].wer == 100.0 and suite.primary.results[1].wer == 0.0
    for folder in ("base", "student", "base@ood", "student@ood"):
        assert (out / folder / "result.json").is_file(), folder
    summary = json.loads((out / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["base", "student"]  # the in-domain set, as before
    assert summary["regressions"][0]["set"] == "ood" and summary["skipped_sets"] == suite.skipped
    assert load_suite(out) == suite and load_evaluation(out).results == suite.primary.results
    table = (out / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| student |") and "[" in line)
    assert row.count(REGRESSION_MARK) == 1 and row.index(REGRESSION_MARK) > row.index("100.00")
    assert "absent: skipped" in table and "ins %" in table


def test_saved_hypotheses_are_reused_only_for_the_same_set_and_model_files(tmp_path, monkeypatch):
    """A rerun decodes again what changed (a rewritten set, a re-exported student) and only that."""
    import os

    import asr_distill.evaluate as ev_module
    from asr_distill.evaluate import evaluate

    calls: list[tuple[str, str]] = []

    def counting(model, manifest, *, name=None, **kw):
        calls.append((name, Path(manifest).stem))
        return _fake_transcribe(model, manifest, name=name, **kw)

    monkeypatch.setattr(ev_module, "transcribe", counting)
    refs, _ = _pairs(30, (0,), seed=4)

    def write_set(name: str, n: int) -> Path:
        lines = [
            json.dumps({"id": f"{name}{i}", "audio_filepath": "x.wav", "text": r})
            for i, r in enumerate(refs[:n])
        ]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return path

    student = tmp_path / "student.pt"
    student.write_bytes(b"weights 1")
    sets = {IN_DOMAIN: write_set("test", 30), "ood": write_set("ood", 10)}

    def run() -> list[tuple[str, str]]:
        calls.clear()
        models = ["base", f"student={student}"]
        evaluate(
            models, sets, tmp_path / "eval", scoring=Scoring(resamples=50), baselines={"student": "base"}
        )
        return sorted(calls)

    assert len(run()) == 4
    assert run() == []  # nothing changed: every decoding is reused
    write_set("ood", 30)  # the set file now holds 30 utterances, not the 10 decoded
    assert run() == [("base", "ood"), ("student", "ood")]
    assert load_suite(tmp_path / "eval").sets["ood"].results[0].score.utterances == 30
    student.write_bytes(b"weights 2")  # a re-export
    os.utime(student, ns=(1, 1))
    assert run() == [("student", "ood"), ("student", "test")]


def test_unloadable_models_and_sets_without_transcripts_stop_or_skip_before_decoding(tmp_path, monkeypatch):
    """A typo in the last model fails before the first is decoded; an unlabeled pool is no test set."""
    import asr_distill.evaluate as ev_module
    from asr_distill.evaluate import evaluate
    from asr_distill.teacher.errors import TeacherNotFoundError

    calls = []
    monkeypatch.setattr(
        ev_module, "transcribe", lambda *a, **kw: calls.append(a) or _fake_transcribe(*a, **kw)
    )
    refs, _ = _pairs(10, (0,), seed=5)
    for name, texts in (("test", refs), ("pool", [""] * 10)):
        lines = [
            json.dumps({"id": f"{name}{i}", "audio_filepath": "x.wav", "text": t})
            for i, t in enumerate(texts)
        ]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TeacherNotFoundError) as e:
        evaluate(
            ["base", "smal", "s=ckpt/student.pt"], tmp_path / "test.jsonl", scoring=Scoring(resamples=20)
        )
    assert "smal: 'smal' is neither" in str(e.value) and "s: ckpt/student.pt does not exist" in str(e.value)
    assert calls == []
    sets = {IN_DOMAIN: tmp_path / "test.jsonl", "pool": tmp_path / "pool.jsonl"}
    suite = evaluate(["base"], sets, scoring=Scoring(resamples=20))
    assert list(suite.sets) == [IN_DOMAIN] and "no reference transcript" in suite.skipped["pool"]
    with pytest.raises(ValueError, match="no reference transcript"):
        evaluate(["base"], tmp_path / "pool.jsonl", scoring=Scoring(resamples=20))


def test_a_single_manifest_summary_from_before_named_sets_still_reads(tmp_path):
    old = {"manifest": "t.jsonl", "normaliser": "format_insensitive", "models": [], "comparisons": []}
    (tmp_path / "summary.json").write_text(json.dumps(old))
    suite = load_suite(tmp_path)
    assert list(suite.sets) == [IN_DOMAIN] and suite.primary.manifest == "t.jsonl" and not suite.regressions


@pytest.mark.slow
def test_evaluate_command_on_real_audio(an4_fixture, tmp_path, capsys):
    """``asr-distill evaluate`` with tiny.en on the 8 AN4 clips and a 3-clip set: files, figures, reuse."""
    from conftest import fixture_lines, write_manifest

    from asr_distill.cli import main
    from asr_distill.jsonl import read_jsonl

    out = tmp_path / "eval"
    few = write_manifest(tmp_path / "few.jsonl", fixture_lines()[:3])
    argv = ["evaluate", "tiny=tiny.en", "--manifest", str(an4_fixture), "--out", str(out)]
    argv += ["--set", f"few={few}", "--set", f"gone={tmp_path / 'gone.jsonl'}"]
    argv += ["--resamples", "200", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipping test set gone" in printed and "| tiny |" in printed and "format_insensitive" in printed
    for name in ("hyps.jsonl", "alignment.jsonl", "alignment.txt", "result.json", "timing.json"):
        assert (out / "tiny" / name).is_file() and (out / "tiny@few" / name).is_file(), name
    ev = load_evaluation(out)
    (r,) = ev.results
    hyps = list(read_jsonl(out / "tiny" / "hyps.jsonl"))
    assert len(hyps) == 8 and r.score.utterances == 8
    again = word_error_rate([h["ref"] for h in hyps], [h["hyp"] for h in hyps], "format_insensitive")
    assert r.wer == pytest.approx(again.wer)
    assert r.wer < 30  # tiny.en is a usable recogniser on clean AN4 digits and letters
    assert r.ci.low <= r.wer <= r.ci.high
    assert r.rtfx > 0 and 30e6 < r.params < 45e6  # tiny.en: 37M parameters
    assert "whisper_en" in r.other_wer
    assert sum(g.utterances for g in r.per_speaker) == 8
    suite = load_suite(out)
    assert suite.sets["few"].results[0].score.utterances == 3 and "gone" in suite.skipped
    assert json.loads((out / "summary.json").read_text())["normaliser"] == "format_insensitive"
    # a second call reuses the saved hypotheses: same figures, no decoding
    timing = (out / "tiny" / "timing.json").read_text()
    assert main(argv) == 0
    assert (out / "tiny" / "timing.json").read_text() == timing
    assert load_evaluation(out).results[0].wer == r.wer
