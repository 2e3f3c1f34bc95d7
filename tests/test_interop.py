"""Labels out to Hugging Face datasets, lhotse and Kaldi, and datasets back in as labeling input.

Labels are built without a model (records made directly) on the AN4 fixture clips, plus a
long recording made of those clips whose labels are segments at offsets > 0. Each format
is opened by its own library; the Kaldi folder is checked against Kaldi's own rules.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import fixture_lines, write_manifest

from asr_distill.audio import audio_info, load_audio
from asr_distill.interop import detect_input, export_labels, read_input
from asr_distill.interop.inputs import default_cache
from asr_distill.jsonl import atomic_write_jsonl
from asr_distill.records import Provenance, PseudoLabel, TeacherLabel, Utterance

PROV = Provenance("tiny.en", "ab" * 32, "whisper", {"beam_size": 1}, "0.1.0")
PAUSE_S = 0.5
RATE = 16000


def _label(utt_id: str, path: str, offset: float, duration: float, text: str, *, ref=None, speaker=None):
    return TeacherLabel(
        id=utt_id,
        audio_filepath=path,
        offset=offset,
        duration=duration,
        text=text,
        language="en",
        avg_logprob=-0.25,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        temperature=0.0,
        tokens=(),
        provenance=PROV,
        ref_text=ref,
        speaker=speaker,
    )


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """The fixture clips twice over, joined with pauses: ``(path, [(offset, duration, text)])``."""
    pieces, spans, pos = [], [], 0.0
    for d in fixture_lines() * 2:
        samples, rate = sf.read(d["audio_filepath"], dtype="float32")
        assert rate == RATE
        pieces += [samples, np.zeros(int(PAUSE_S * RATE), dtype="float32")]
        spans.append((pos, len(samples) / RATE, d["text"]))
        pos += len(samples) / RATE + PAUSE_S
    path = tmp_path_factory.mktemp("long") / "meeting.wav"
    sf.write(path, np.concatenate(pieces), RATE, subtype="PCM_16")
    return path, spans


@pytest.fixture(scope="module")
def labels(long_recording) -> list[TeacherLabel]:
    """Eight whole clips (speakers known) and the long recording's segments (no speaker)."""
    out = []
    for d in fixture_lines():
        duration, _, _ = audio_info(d["audio_filepath"])
        out.append(
            _label(
                d["id"],
                d["audio_filepath"],
                0.0,
                duration,
                d["text"].upper(),
                ref=d["text"],
                speaker=d["speaker"],
            )
        )
    path, spans = long_recording
    out += [_label(f"meeting@{off:.2f}", str(path), off, dur, text) for off, dur, text in spans[::3]]
    return out


@pytest.fixture(scope="module")
def labels_file(labels, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    atomic_write_jsonl(path, labels)
    return path


def _pseudo(lab: TeacherLabel) -> PseudoLabel:
    scores = {"avg_logprob": lab.avg_logprob, "no_speech": 1 - lab.no_speech_prob, "agreement": None}
    return PseudoLabel(
        id=lab.id,
        audio_filepath=lab.audio_filepath,
        offset=lab.offset,
        duration=lab.duration,
        text=lab.text.lower(),
        teacher_text=lab.text,
        language="en",
        score_name="avg_logprob",
        score=lab.avg_logprob,
        scores=scores,
        corrections=(),
        filter_history=(),
        drop_reasons=(),
        provenance=lab.provenance,
        ref_text=lab.ref_text,
        speaker=lab.speaker,
    )


# --- Hugging Face datasets ----------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_dir(labels_file, tmp_path_factory) -> Path:
    pytest.importorskip("datasets")
    out = tmp_path_factory.mktemp("hf") / "dataset"
    assert export_labels(labels_file, "hf", out) == len(labels_file.read_text().splitlines())
    return out


def _undecoded(path: Path):
    import datasets

    ds = datasets.load_from_disk(str(path))
    assert isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].sampling_rate == RATE
    return ds.cast_column("audio", datasets.Audio(decode=False))  # decoding needs torchcodec


def test_hf_dataset_opens_with_the_label_under_distil_whispers_column(hf_dir, labels):
    ds = _undecoded(hf_dir)
    for col in (
        "whisper_transcript",
        "text",
        "avg_logprob",
        "no_speech_prob",
        "compression_ratio",
        "teacher",
        "weights_sha256",
        "audio_filepath",
        "offset",
        "duration",
    ):
        assert col in ds.column_names, col
    assert ds["id"] == [lab.id for lab in labels]
    assert ds["whisper_transcript"] == [lab.text for lab in labels]
    assert ds["text"] == [lab.ref_text or "" for lab in labels]
    assert ds["offset"] == [lab.offset for lab in labels]
    assert set(ds["weights_sha256"]) == {PROV.weights_sha256} and set(ds["teacher"]) == {"tiny.en"}
    assert ds["no_speech_prob"] == [0.01] * len(labels)


def test_hf_audio_is_the_labels_own_segment(hf_dir, labels):
    ds = _undecoded(hf_dir)
    for lab, row in zip(labels, ds, strict=True):
        samples, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
        want = load_audio(lab.audio_filepath, lab.offset, lab.duration)
        assert rate == RATE and len(samples) == len(want), lab.id
        assert np.max(np.abs(samples - want)) <= 1 / 32768 + 1e-6, lab.id


def test_hf_export_of_pseudo_labels_keeps_scores_and_joins_teacher_statistics(labels, labels_file, tmp_path):
    pytest.importorskip("datasets")
    kept = tmp_path / "kept.jsonl"
    atomic_write_jsonl(kept, [_pseudo(lab) for lab in labels[:3]])
    export_labels(kept, "hf", tmp_path / "a")
    export_labels(kept, "hf", tmp_path / "b", teacher_labels=labels_file)
    a, b = _undecoded(tmp_path / "a"), _undecoded(tmp_path / "b")
    assert a["whisper_transcript"] == [lab.text.lower() for lab in labels[:3]]
    assert a["teacher_text"] == [lab.text for lab in labels[:3]]
    assert a["score_name"] == ["avg_logprob"] * 3 and a["avg_logprob"] == [-0.25] * 3
    assert a[0]["scores"] == {"agreement": None, "avg_logprob": -0.25, "no_speech": pytest.approx(0.99)}
    assert a["no_speech_prob"] == [None] * 3 and b["no_speech_prob"] == [0.01] * 3


def test_hf_dataset_reads_back_as_utterances(hf_dir, labels, tmp_path):
    cache = tmp_path / "cache"
    utts = list(read_input(hf_dir, cache_dir=cache))
    assert all(isinstance(u, Utterance) for u in utts)
    assert [u.id for u in utts] == [lab.id for lab in labels]
    assert [u.text for u in utts] == [lab.ref_text for lab in labels]
    assert [u.speaker for u in utts] == [lab.speaker for lab in labels]
    for u, lab in zip(utts, labels, strict=True):
        assert Path(u.audio_filepath).parent == cache and u.offset == 0.0
        assert u.duration == pytest.approx(lab.duration, abs=1 / RATE)
    # a shard writes only its own rows; together the shards are the whole
    shards = [list(read_input(hf_dir, shard=(i, 3), cache_dir=tmp_path / "sharded")) for i in range(3)]
    assert sorted(u.id for s in shards for u in s) == sorted(u.id for u in utts)
    assert len(list((tmp_path / "sharded").iterdir())) == len(utts)


def test_hf_default_cache_is_beside_the_dataset(hf_dir):
    first = next(read_input(hf_dir))
    assert Path(first.audio_filepath).parent == default_cache(hf_dir)


# --- lhotse -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lhotse_dir(labels_file, tmp_path_factory) -> Path:
    pytest.importorskip("lhotse")
    out = tmp_path_factory.mktemp("lhotse") / "cuts"
    export_labels(labels_file, "lhotse", out)
    return out


def test_lhotse_manifests_open_and_keep_offsets(lhotse_dir, labels, long_recording):
    import lhotse

    cuts = lhotse.load_manifest(lhotse_dir / "cuts.jsonl.gz")
    recs = lhotse.load_manifest(lhotse_dir / "recordings.jsonl.gz")
    sups = lhotse.load_manifest(lhotse_dir / "supervisions.jsonl.gz")
    assert isinstance(cuts, lhotse.CutSet) and isinstance(recs, lhotse.RecordingSet)
    assert isinstance(sups, lhotse.SupervisionSet)
    lhotse.validate_recordings_and_supervisions(recs, sups)
    lhotse.validate(cuts)
    assert len(recs) == 9  # eight clips and one long recording shared by its segments
    long_sups = [s for s in sups if s.recording_id == "meeting"]
    assert [s.start for s in long_sups] == [lab.offset for lab in labels if lab.id.startswith("meeting@")]
    assert min(s.start for s in long_sups) == 0.0 and max(s.start for s in long_sups) > 10
    by_id = {lab.id: lab for lab in labels}
    for cut in cuts:
        lab = by_id[cut.id]
        assert (cut.start, cut.duration, cut.recording.sources[0].source) == (
            lab.offset,
            pytest.approx(lab.duration),
            lab.audio_filepath,
        )
        (sup,) = cut.supervisions
        assert sup.start == 0.0 and sup.text == lab.text and sup.speaker == lab.speaker
        assert sup.custom["avg_logprob"] == -0.25 and sup.custom["weights_sha256"] == PROV.weights_sha256
        assert sup.custom["ref_text"] == lab.ref_text
    cut = cuts[labels[-1].id]
    want = load_audio(labels[-1].audio_filepath, labels[-1].offset, labels[-1].duration)
    assert np.allclose(cut.load_audio()[0], want, atol=1e-4)


def test_lhotse_round_trip_gives_the_same_utterances(lhotse_dir, labels):
    for source in (lhotse_dir, lhotse_dir / "cuts.jsonl.gz"):
        assert detect_input(source) == "lhotse"
        utts = list(read_input(source))
        assert [(u.id, u.audio_filepath, u.offset) for u in utts] == [
            (lab.id, lab.audio_filepath, lab.offset) for lab in labels
        ]
        assert [u.duration for u in utts] == pytest.approx([lab.duration for lab in labels])
        assert [u.text for u in utts] == [lab.ref_text for lab in labels]


def test_lhotse_recording_set_reads_as_whole_recordings(lhotse_dir, labels):
    utts = list(read_input(lhotse_dir / "recordings.jsonl.gz"))
    assert len(utts) == 9 and all(u.offset == 0.0 for u in utts)
    assert {u.audio_filepath for u in utts} == {lab.audio_filepath for lab in labels}


def test_lhotse_export_clips_a_rounded_duration_and_refuses_a_label_past_the_end(labels, tmp_path):
    pytest.importorskip("lhotse")
    import lhotse

    lab = labels[0]
    over = tmp_path / "over.jsonl"
    atomic_write_jsonl(over, [_label("x", lab.audio_filepath, 0.0, lab.duration + 0.05, "x")])
    export_labels(over, "lhotse", tmp_path / "ok")
    (cut,) = lhotse.load_manifest(tmp_path / "ok" / "cuts.jsonl.gz")
    assert cut.duration == pytest.approx(lab.duration)
    past = tmp_path / "past.jsonl"
    atomic_write_jsonl(past, [_label("x", lab.audio_filepath, lab.duration + 1, 1.0, "x")])
    with pytest.raises(ValueError, match="past the end"):
        export_labels(past, "lhotse", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing half-written


# --- Kaldi --------------------------------------------------------------------------------


def _kaldi_table(path: Path, fields: int | None = None) -> list[tuple[str, str]]:
    """``(key, rest)`` per line, checked sorted in C-locale (byte) order and unique."""
    rows = []
    for line in path.read_bytes().decode("utf-8").split("\n")[:-1]:
        key, _, rest = line.partition(" ")
        assert key and "\t" not in line and "\r" not in line, f"{path.name}: bad line {line!r}"
        if fields is not None:
            assert len(line.split()) == fields, f"{path.name}: {line!r} should have {fields} fields"
        rows.append((key, rest))
    keys = [k.encode() for k, _ in rows]
    assert keys == sorted(keys), f"{path.name} is not sorted in C-locale order"
    assert len(set(keys)) == len(keys), f"{path.name} repeats a key"
    return rows


def validate_kaldi_dir(d: Path) -> dict[str, dict[str, str]]:
    """Kaldi's ``utils/validate_data_dir.sh`` rules for a segmented data directory."""
    t = {n: dict(_kaldi_table(d / n)) for n in ("wav.scp", "text")}
    t.update({n: dict(_kaldi_table(d / n, 2)) for n in ("utt2spk", "utt2dur", "reco2dur")})
    t["segments"] = dict(_kaldi_table(d / "segments", 4))
    spk2utt = _kaldi_table(d / "spk2utt")
    utts = set(t["utt2spk"])
    for name in ("text", "segments", "utt2dur"):
        assert set(t[name]) == utts, f"{name} and utt2spk list different utterances"
    # spk2utt expanded in its own order must be utt2spk exactly (spk2utt_to_utt2spk.pl | cmp)
    assert [(u, s) for s, us in spk2utt for u in us.split()] == sorted(t["utt2spk"].items())
    for utt, spk in t["utt2spk"].items():
        assert utt == spk or utt.startswith(spk), f"{utt} is not prefixed by its speaker {spk}"
    assert {v.split()[0] for v in t["segments"].values()} == set(t["wav.scp"]) == set(t["reco2dur"])
    for utt, v in t["segments"].items():
        rec, start, end = v.split()
        assert 0 <= float(start) < float(end) <= float(t["reco2dur"][rec]) + 1e-6, utt
    return t


def test_kaldi_dir_passes_kaldis_rules(labels_file, labels, tmp_path):
    pytest.importorskip("lhotse")
    out = tmp_path / "data"
    assert export_labels(labels_file, "kaldi", out) == len(labels)
    t = validate_kaldi_dir(out)
    for lab in labels:
        utt = f"{lab.speaker}-{lab.id}" if lab.speaker else lab.id
        assert t["text"][utt] == lab.text
        assert t["utt2spk"][utt] == (lab.speaker or utt)  # no speaker: the utterance is its own
        rec, start, end = t["segments"][utt].split()
        assert float(start) == pytest.approx(lab.offset) and float(end) == pytest.approx(
            lab.offset + lab.duration
        )
    assert t["wav.scp"]["meeting"] == str(labels[-1].audio_filepath)  # a wav file is read as is
    assert "ffmpeg" in t["wav.scp"]["an406-fcaw-b"]  # flac goes through a pipe


def test_kaldi_refuses_speaker_ids_that_would_sort_apart(labels, tmp_path):
    pytest.importorskip("lhotse")
    lab = labels[0]
    path = tmp_path / "labels.jsonl"
    rows = [
        _label(i, lab.audio_filepath, 0.0, 1.0, "x", speaker=s)
        for i, s in (("x", "a"), ("y", "a-b"), ("z", "a"))
    ]
    atomic_write_jsonl(path, rows)
    with pytest.raises(ValueError, match="sort"):
        export_labels(path, "kaldi", tmp_path / "data")


# --- shared behaviour ---------------------------------------------------------------------


def test_detect_input_leaves_manifests_and_folders_to_the_manifest_reader(tmp_path, hf_dir):
    manifest = write_manifest(tmp_path / "m.jsonl", fixture_lines()[:2])
    assert detect_input(manifest) is None and detect_input(tmp_path) is None
    assert detect_input(hf_dir) == "hf"
    assert [u.id for u in read_input(manifest)] == [d["id"] for d in fixture_lines()[:2]]


def test_a_folder_it_did_not_write_is_never_replaced_and_its_own_only_with_force(labels_file, tmp_path):
    pytest.importorskip("lhotse")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # not even with --force: the export would delete notes.txt
        with pytest.raises(FileExistsError, match="did not write"):
            export_labels(labels_file, "lhotse", out, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    export_labels(labels_file, "lhotse", ours)
    with pytest.raises(FileExistsError, match="--force"):
        export_labels(labels_file, "kaldi", ours)
    export_labels(labels_file, "lhotse", ours, overwrite=True)
    assert sorted(p.name for p in ours.iterdir()) == [
        ".asr_distill_output",
        "cuts.jsonl.gz",
        "recordings.jsonl.gz",
        "supervisions.jsonl.gz",
    ]


def test_a_second_export_to_the_same_folder_is_refused_while_the_first_runs(labels_file, tmp_path):
    from asr_distill.jsonl import OutputLockedError, output_lock

    with output_lock(tmp_path / "out", folder=False):
        with pytest.raises(OutputLockedError, match="being written by another process"):
            export_labels(labels_file, "kaldi", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_refused(labels_file, tmp_path):
    with pytest.raises(ValueError, match="unknown export format"):
        export_labels(labels_file, "nemo", tmp_path / "x")


def test_a_missing_extra_is_named(labels_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lhotse", None)  # import lhotse now raises ImportError
    with pytest.raises(ImportError, match=r"asr_distill\[interop\]"):
        export_labels(labels_file, "kaldi", tmp_path / "k")


def test_cli_export_labels(labels, labels_file, tmp_path, capsys):
    pytest.importorskip("lhotse")
    from asr_distill.cli import main

    before = labels_file.read_bytes()
    assert main(["export-labels", str(labels_file), "--format", "lhotse", "--out", str(tmp_path / "c")]) == 0
    assert f"wrote {len(labels)} labels as lhotse" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds an earlier export"):
        main(["export-labels", str(labels_file), "--format", "lhotse", "--out", str(tmp_path / "c")])
    assert labels_file.read_bytes() == before  # the input is untouched


@pytest.mark.slow
def test_the_labeler_reads_a_cutset_and_a_saved_dataset(lhotse_dir, hf_dir, labels, tiny_teacher):
    import asr_distill.label as label_stage

    from_cuts = list(label_stage.label(lhotse_dir, label_stage.LabelRun(tiny_teacher, backend="whisper")))
    from_hf = list(label_stage.label(hf_dir, label_stage.LabelRun(tiny_teacher, backend="whisper")))
    assert all(isinstance(x, TeacherLabel) for x in from_cuts + from_hf)
    by_id = {lab.id: lab for lab in labels}
    assert sorted(x.id for x in from_cuts) == sorted(by_id) == sorted(x.id for x in from_hf)
    for x in from_cuts:
        assert (x.audio_filepath, x.offset) == (by_id[x.id].audio_filepath, by_id[x.id].offset)
    # the dataset embeds the very samples the cuts point at: the teacher hears the same audio
    assert {x.id: x.text for x in from_cuts} == {x.id: x.text for x in from_hf}
