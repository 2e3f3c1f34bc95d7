"""Records: every record type survives ``to_dict`` -> JSON -> ``from_dict`` unchanged.

The one generic decoder handles nesting, optional fields, unknown and missing keys.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from pathlib import Path

import pytest

from asr_distill import records
from asr_distill.records import (
    Correction,
    Evaluation,
    GroupWer,
    Interval,
    ModelResult,
    PairedComparison,
    Provenance,
    PseudoLabel,
    ReviewEntry,
    Skip,
    TeacherLabel,
    TokenScore,
    Transcription,
    Utterance,
    UtteranceScore,
    Verdict,
    WerResult,
    WordTiming,
    from_dict,
    to_dict,
    to_json,
)

PROVENANCE = Provenance("base", "ab" * 32, "whisper", {"beam_size": None, "temperatures": [0.0, 0.2]}, "0.1")
TOKENS = (TokenScore(" Hello", -0.1, 0.3, 0.2, 0.25), TokenScore(".", -0.01, None))
TEACHER_LABEL = TeacherLabel(
    id="u1",
    audio_filepath="/a/u1.wav",
    offset=0.0,
    duration=2.5,
    text=" Hello.",
    language="en",
    avg_logprob=-0.2,
    no_speech_prob=0.01,
    compression_ratio=1.1,
    temperature=0.0,
    tokens=TOKENS,
    provenance=PROVENANCE,
    language_prob=0.99,
    detected_language="en",
    window_s=10.0,
    ref_text="hello",
    speaker="s1",
    words=(WordTiming(" Hello.", 0.32, 0.84, 0.93),),
)
CORRECTION = Correction("trim_loops", "a a a a b", "a b")
VERDICTS = (Verdict("no_speech", True, "", 0.01, 0.6), Verdict("low_confidence", False, "below", -1.2, -0.8))
REVIEW = ReviewEntry("ann", "2024-01-01T00:00:00Z", "accept", "hello", "Hello", note="ok")
PSEUDO_LABEL = PseudoLabel(
    id="u1",
    audio_filepath="/a/u1.wav",
    offset=0.0,
    duration=2.5,
    text="hello",
    teacher_text=" Hello.",
    language="en",
    score_name="avg_logprob",
    score=-0.2,
    scores={"avg_logprob": -0.2, "agreement": None},
    corrections=(CORRECTION,),
    filter_history=VERDICTS,
    drop_reasons=("low_confidence",),
    provenance=PROVENANCE,
    review=(REVIEW,),
    ref_text="hello",
    speaker=None,
)
WER = WerResult(12.5, 6.0, 1, 2, 3, 48, "format_insensitive", 10)
INTERVAL = Interval(10.0, 15.0, 0.95, 1000)
GROUPS = (GroupWer("s1", 4, 20, 2, 10.0, 8.5), GroupWer("s2", 6, 28, 4, 14.2857, 11.0))
UTTERANCE_SCORE = UtteranceScore(
    id="u1",
    ref="The cat",
    hyp="the bat",
    ref_norm="the cat",
    hyp_norm="the bat",
    substitutions=1,
    deletions=0,
    insertions=0,
    ref_words=2,
    duration=1.5,
    speaker="s1",
    alignment=(("equal", "the", "the"), ("substitute", "cat", "bat")),
)
MODEL_RESULT = ModelResult(
    model="teacher",
    source="base",
    manifest="test.jsonl",
    normaliser="format_insensitive",
    score=WER,
    ci=INTERVAL,
    rtfx=20.5,
    params=74_000_000,
    audio_s=19.5,
    wall_s=0.95,
    skipped=1,
    per_speaker=GROUPS,
    per_duration=GROUPS[:1],
    other_wer={"whisper_en": 13.0},
)
COMPARISON = PairedComparison(
    "student", "teacher", "format_insensitive", 10.0, 12.5, -2.5, Interval(-4.0, -1.0, 0.95, 1000), 0.01, 10
)
TRANSCRIPTION = Transcription(
    "teacher",
    "base",
    74_000_000,
    ("u1", "u2"),
    ("a", "b"),
    ("a", "c"),
    (1.0, 2.5),
    ("s1", None),
    3.5,
    0.2,
    skipped=1,
)

# One instance of every record type in asr_distill.records; the coverage test below fails
# when a record is added without one.
SAMPLES = [
    Utterance("u1", "/a/u1.wav", 2.5, 0.5, "hello", "s1"),
    Utterance("u2", "/a/u2.wav", 1.0),
    Skip("u3", "/a/u3.wav", "unreadable", "not a sound file", 0.0, None),
    *TOKENS,
    *TEACHER_LABEL.words,
    PROVENANCE,
    TEACHER_LABEL,
    CORRECTION,
    *VERDICTS,
    REVIEW,
    PSEUDO_LABEL,
    WER,
    UTTERANCE_SCORE,
    INTERVAL,
    *GROUPS,
    TRANSCRIPTION,
    MODEL_RESULT,
    COMPARISON,
    Evaluation("test.jsonl", "format_insensitive", (MODEL_RESULT, MODEL_RESULT), (COMPARISON,), "eval"),
]


def _record_types() -> set[type]:
    return {
        v
        for v in vars(records).values()
        if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == records.__name__
    }


def test_every_record_type_has_a_sample():
    assert _record_types() == {type(s) for s in SAMPLES}


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip_through_json(record):
    line = to_json(record)
    back = from_dict(type(record), json.loads(line))
    assert back == record
    assert to_json(back) == line
    assert type(record).from_dict(json.loads(line)) == record  # the thin classmethod agrees
    assert record.to_dict() == to_dict(record)


def test_nested_values_come_back_typed():
    back = from_dict(PseudoLabel, json.loads(to_json(PSEUDO_LABEL)))
    assert isinstance(back.provenance, Provenance)
    assert all(isinstance(c, Correction) for c in back.corrections)
    assert isinstance(back.filter_history, tuple) and isinstance(back.filter_history[0], Verdict)
    assert isinstance(back.drop_reasons, tuple)
    ev = from_dict(Evaluation, json.loads(json.dumps(to_dict(SAMPLES[-1]))))
    assert isinstance(ev.results[0].score, WerResult) and isinstance(ev.results[0].per_speaker[0], GroupWer)
    assert ev.comparisons[0].delta_ci == COMPARISON.delta_ci
    score = from_dict(UtteranceScore, json.loads(to_json(UTTERANCE_SCORE)))
    assert score.alignment[1] == ("substitute", "cat", "bat")


def test_unknown_keys_are_ignored():
    d = to_dict(MODEL_RESULT) | {"wer": 12.5, "cer": 6.0, "added_by_a_newer_writer": [1, 2]}
    assert from_dict(ModelResult, d) == MODEL_RESULT
    d = to_dict(COMPARISON) | {"a_better": True}
    assert from_dict(PairedComparison, d) == COMPARISON


def test_missing_keys_take_defaults_and_missing_tuples_read_as_empty():
    d = to_dict(TEACHER_LABEL)
    for key in ("tokens", "language_prob", "detected_language", "window_s", "ref_text", "speaker"):
        del d[key]
    lab = from_dict(TeacherLabel, d)
    assert lab.tokens == () and lab.window_s == 30.0 and lab.ref_text is None


def test_missing_required_field_or_wrong_shape_raises_type_error():
    d = to_dict(TEACHER_LABEL)
    del d["provenance"]
    with pytest.raises(TypeError):
        from_dict(TeacherLabel, d)
    with pytest.raises(TypeError, match="Provenance"):
        from_dict(TeacherLabel, to_dict(TEACHER_LABEL) | {"provenance": "base"})
    with pytest.raises(TypeError):
        from_dict(Utterance, ["u1", "/a.wav", 1.0])


def test_infinite_wer_survives_a_summary_file():
    r = dataclasses.replace(WER, wer=math.inf)
    assert from_dict(WerResult, json.loads(json.dumps(to_dict(r)))) == r


def test_records_import_no_other_package_module():
    """Every stage imports records; records import only the standard library."""
    tree = ast.parse(Path(records.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "records.py must not import another asr_distill module"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
    assert not imported & {"asr_distill", "torch", "whisper", "numpy", "jiwer"}
