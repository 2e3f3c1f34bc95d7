"""Word timestamps in labels, on real models and the committed AN4 clips.

The teacher's words must spell its text, sit in order inside the clip and carry
probabilities; asking for them must not change the text; a student exported from a known
Whisper keeps that model's alignment heads, so it times words as the teacher does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from whisper.model import ModelDimensions

from asr_distill.label import LabelRun, label
from asr_distill.records import TeacherLabel
from asr_distill.student.export import alignment_heads, export_ct2, export_whisper_pt, source_alignment_heads
from asr_distill.teacher.options import LabelOptions

WORDS = LabelOptions(word_timestamps=True)


def _labels(manifest: Path, teacher, backend: str = "whisper", options: LabelOptions = WORDS):
    records = list(label(manifest, LabelRun(teacher, backend, options, batch_size=8)))
    assert all(isinstance(r, TeacherLabel) for r in records), records
    return {r.id: r for r in records}


def _letters(text: str) -> str:
    return re.sub(r"[\W_]", "", text).lower()


def _check_words(lab: TeacherLabel) -> None:
    """Words spell the text, run forward in time inside the clip, with probabilities in [0, 1]."""
    assert lab.words, f"{lab.id}: {lab.text!r} has no words"
    assert "".join(w.word for w in lab.words).strip() == lab.text
    assert _letters(" ".join(w.word for w in lab.words)) == _letters(lab.text)
    for w in lab.words:
        assert 0.0 <= w.start <= w.end <= lab.duration + 0.02, (lab.id, w)
        assert 0.0 <= w.probability <= 1.0, (lab.id, w)
    for a, b in zip(lab.words, lab.words[1:], strict=False):
        assert a.start <= b.start and a.end <= b.start + 1e-6, (lab.id, a, b)
    assert lab.words[-1].end > 0.5 * lab.duration, (lab.id, lab.words)  # not all squeezed to 0


def _word_gaps(teacher: dict, student: dict) -> list[float]:
    """|start| and |end| differences of words both spelled alike, over clips with the same words."""
    gaps = []
    for key, t in teacher.items():
        s = student[key]
        if [w.word for w in t.words] == [w.word for w in s.words]:
            for a, b in zip(t.words, s.words, strict=True):
                gaps += [abs(a.start - b.start), abs(a.end - b.end)]
    return gaps


@pytest.fixture(scope="module")
def timed(an4_fixture, tiny_teacher) -> dict[str, TeacherLabel]:
    return _labels(an4_fixture, tiny_teacher)


@pytest.mark.slow
def test_teacher_words_spell_the_text_in_order_inside_the_clip(timed):
    assert len(timed) == 8
    for lab in timed.values():
        _check_words(lab)
    # the clips start with a pause, and several words follow each other: times must spread out
    starts = [w.start for lab in timed.values() for w in lab.words]
    assert len(set(starts)) > len(timed) and max(starts) > 1.0


@pytest.mark.slow
def test_word_timestamps_change_nothing_else(an4_fixture, tiny_teacher, timed):
    plain = _labels(an4_fixture, tiny_teacher, options=LabelOptions())
    assert plain.keys() == timed.keys()
    for key, lab in plain.items():
        assert lab.words == ()
        assert lab.text == timed[key].text and lab.tokens == timed[key].tokens
        assert lab.provenance.decoding["word_timestamps"] is False
    assert all(lab.provenance.decoding["word_timestamps"] is True for lab in timed.values())


@pytest.mark.slow
def test_words_match_whisper_transcribe(an4_fixture, tiny_teacher, timed):
    """The batched pass on our encoder window times words as ``whisper.transcribe`` does."""
    import whisper

    from asr_distill.audio import load_audio

    gaps = []
    for lab in list(timed.values())[:4]:
        result = whisper.transcribe(
            tiny_teacher.model,
            load_audio(lab.audio_filepath),
            word_timestamps=True,
            fp16=False,
            language="en",
        )
        ref = [w for seg in result["segments"] for w in seg["words"]]
        if [w["word"] for w in ref] == [w.word for w in lab.words]:
            gaps += [abs(w["start"] - x.start) for w, x in zip(ref, lab.words, strict=True)]
            gaps += [abs(w["end"] - x.end) for w, x in zip(ref, lab.words, strict=True)]
    assert len(gaps) >= 8, "too few clips with the same words to compare"
    assert np.median(gaps) <= 0.06 and max(gaps) <= 0.3, gaps


@pytest.mark.slow
def test_faster_whisper_backend_times_words_alike(an4_fixture, tiny_teacher, timed):
    ct2 = _labels(an4_fixture, tiny_teacher, backend="faster-whisper")
    for lab in ct2.values():
        _check_words(lab)
    gaps = _word_gaps(timed, ct2)
    assert len(gaps) >= 10 and np.median(gaps) <= 0.1, gaps


def test_labels_keep_their_words_through_the_label_file(tmp_path, an4_fixture, tiny_teacher):
    from asr_distill.label import label_to_file

    lines = an4_fixture.read_text().splitlines()[-1:]  # "enter seven", 1.6 s
    manifest = tmp_path / "one.jsonl"
    audio = str(an4_fixture.parent / json.loads(lines[0])["audio_filepath"])
    manifest.write_text(json.dumps(json.loads(lines[0]) | {"audio_filepath": audio}) + "\n")
    out = tmp_path / "labels.jsonl"
    label_to_file(manifest, out, LabelRun(tiny_teacher, options=WORDS))
    (lab,) = [TeacherLabel.from_dict(json.loads(x)) for x in out.read_text().splitlines()]
    _check_words(lab)
    assert [w.word.strip(" .").lower() for w in lab.words] == ["enter", "seven"]


def test_known_models_heads_come_from_whispers_table_and_ct2_config(tiny_teacher):
    dims = tiny_teacher.model.dims
    table = source_alignment_heads("tiny.en", dims.n_text_head)
    from_ct2 = source_alignment_heads(str(tiny_teacher.ct2_dir), dims.n_text_head)
    assert table.shape == (dims.n_text_layer, dims.n_text_head) and table.sum() == 8
    assert torch.equal(table, from_ct2)
    assert torch.equal(table, tiny_teacher.model.alignment_heads.to_dense())
    assert source_alignment_heads("my-own-student", dims.n_text_head) is None


def test_cut_students_keep_the_teachers_heads_in_the_layers_they_copied():
    base = ModelDimensions(80, 1500, 512, 8, 6, 51865, 448, 512, 8, 2)  # a cut of base: 2 decoder layers
    cut = {"training_config": {"init": "teacher", "teacher": "base"}, "layout": {"decoder_layers": [0, 5]}}
    heads = alignment_heads(base, cut)
    assert heads.nonzero().tolist() == [[1, 1], [1, 2], [1, 4], [1, 6]]  # base's heads in its layer 5
    first_two = cut | {"layout": {"decoder_layers": [0, 1]}}  # none of base's heads: the default
    assert alignment_heads(base, first_two).nonzero().tolist() == [[1, h] for h in range(8)]
    assert alignment_heads(base, {}).nonzero().tolist() == [[1, h] for h in range(8)]


@pytest.mark.slow
def test_exported_student_times_words_as_its_teacher(tmp_path, an4_fixture, tiny_teacher, timed):
    """A tiny.en-initialised student, through ``export_whisper_pt`` and ``export_ct2``."""
    from asr_distill import load_teacher

    desc = {"training_config": {"init": "tiny.en", "teacher": "base"}, "layout": {"decoder_layers": []}}
    pt = export_whisper_pt(tiny_teacher.model, tmp_path / "student.pt", desc)
    student = load_teacher(pt)
    want = tiny_teacher.model.alignment_heads.to_dense()
    assert torch.equal(student.model.alignment_heads.to_dense(), want)
    gaps = _word_gaps(timed, _labels(an4_fixture, student))
    assert len(gaps) >= 20 and np.median(gaps) <= 0.2 and max(gaps) <= 0.05, gaps

    out = export_ct2(tiny_teacher.model, tmp_path / "ct2", tiny_teacher.ct2_dir, desc)
    config = json.loads((out / "config.json").read_text())
    assert config["alignment_heads"] == want.nonzero().tolist()
