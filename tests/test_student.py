"""The student stage on real models and real audio: build, train (loss falls), resume, export.

tiny.en is the teacher here (it loads in about a second); the fixture's eight AN4 clips
are the training data. One short training run is shared by the tests that need it.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch
import whisper
import yaml
from conftest import fixture_lines, write_manifest

from asr_distill.audio import load_audio
from asr_distill.cli import main as cli_main
from asr_distill.jsonl import exclusive_lock
from asr_distill.student.build import cut_student, param_count, spaced_layers
from asr_distill.student.checkpoint_io import AtomicCheckpointIO
from asr_distill.student.short_context import WindowPolicy, evaluation_options, student_options
from asr_distill.teacher.options import ContextFloor, LabelOptions

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "student_an4_cut.yaml"
STEPS = 12


@pytest.mark.parametrize(
    "n, k, expected",
    [
        (6, 2, (0, 5)),
        (6, 3, (0, 2, 5)),
        (4, 2, (0, 3)),
        (32, 2, (0, 31)),
        (4, 4, (0, 1, 2, 3)),
        (6, 1, (5,)),
    ],
)
def test_spaced_layers(n, k, expected):
    assert spaced_layers(n, k) == expected


@pytest.mark.parametrize("n, k", [(4, 0), (4, 5)])
def test_spaced_layers_rejects_impossible_counts(n, k):
    with pytest.raises(ValueError, match="cannot keep"):
        spaced_layers(n, k)


def test_cut_student_keeps_first_and_last_decoder_layers(tiny_teacher):
    teacher = tiny_teacher.model
    student, layout = cut_student(teacher, decoder_layers=2, encoder_layers=[0, 2])
    assert layout.decoder_layers == (0, 3) and layout.encoder_layers == (0, 2)
    assert student.dims.n_text_layer == 2 and student.dims.n_audio_layer == 2
    for j, i in enumerate((0, 3)):
        for k, v in student.decoder.blocks[j].state_dict().items():
            assert torch.equal(v, teacher.decoder.blocks[i].state_dict()[k]), f"decoder block {j}.{k}"
    assert torch.equal(student.encoder.blocks[1].mlp[0].weight, teacher.encoder.blocks[2].mlp[0].weight)
    assert torch.equal(student.decoder.token_embedding.weight, teacher.decoder.token_embedding.weight)
    assert layout.student_params == param_count(student) < layout.teacher_params == param_count(teacher)


@pytest.mark.parametrize(
    "duration, window",
    [(0.7, 2.0), (1.6, 3.0), (2.5, 3.0), (4.4, 5.0), (4.6, 6.0), (29.7, 30.0), (45.0, 30.0)],
)
def test_window_policy_pads_to_the_clip_not_to_30s(duration, window):
    assert WindowPolicy().window_for(duration) == window
    assert student_options(WindowPolicy()).window_for(duration) == window
    assert student_options(WindowPolicy(short=False)).window_for(duration) == 30.0


def test_a_student_decodes_as_it_was_trained():
    """Students learn labels after <|notimestamps|>; decoding them in timestamp mode truncated numbers."""
    assert student_options(WindowPolicy()).timestamps is False
    options = student_options(WindowPolicy(), temperatures=(0.0,))
    assert options.timestamps is False and options.temperatures == (0.0,)
    assert student_options(WindowPolicy()).temperatures == LabelOptions().temperatures


def test_a_timestamped_student_decodes_in_timestamp_mode():
    """A student trained on timestamped segments says so in its description, and is decoded so."""
    policy = {"short": True, "step_s": 1.0, "margin_s": 0.5, "min_s": 10.0}
    desc = {"window_policy": policy, "timestamps": True}
    options = evaluation_options(desc)
    assert options.timestamps is True and options.window_for(3.0) == 10.0
    assert evaluation_options({**desc, "timestamps": False}).timestamps is False
    assert evaluation_options({"window_policy": desc["window_policy"]}).timestamps is False  # older exports
    assert evaluation_options(None).timestamps is True  # Whisper itself: its timestamp mode, 10 s floor


def test_timestamped_targets_are_one_segment_closed_at_the_clips_end():
    from whisper.tokenizer import get_tokenizer

    from asr_distill.student.data import target_tokens

    tok = get_tokenizer(False)
    prefix = list(tok.sot_sequence)
    text = tok.encode(" call me back")
    plain = target_tokens(tok, prefix, "call me back", 64)
    assert plain == prefix + text + [tok.eot]
    stamped = target_tokens(tok, prefix, "call me back", 64, end_s=2.437)
    assert stamped == prefix + [tok.timestamp_begin, *text, tok.timestamp_begin + 122, tok.eot]
    assert tok.decode_with_timestamps(stamped[len(prefix) : -1]) == "<|0.00|> call me back<|2.44|>"
    cut = target_tokens(tok, prefix, "call me back", len(prefix) + 4, end_s=40.0)
    assert cut[-2:] == [tok.timestamp_begin + 1500, tok.eot] and len(cut) == len(prefix) + 4


def test_validation_greedy_decode_ends_at_the_closing_timestamp(tiny_teacher, an4_fixture):
    """tiny.en, opened at <|0.00|>, writes the clip's words and closes the segment.

    No timestamp token leaks into the text, and the decode ends well before its token cap.
    """
    from asr_distill.features import encode_mels, log_mel_batch
    from asr_distill.student.module import greedy_decode
    from asr_distill.teacher.backends import make_tokenizer

    model = tiny_teacher.model
    tok = make_tokenizer(model.is_multilingual, model.num_languages)
    audio = load_audio(an4_fixture.parent / "audio" / "an406-fcaw-b.flac")
    with torch.no_grad():
        feats = encode_mels(model, log_mel_batch([audio], 10.0, model.dims.n_mels))
        plain = greedy_decode(model, feats, list(tok.sot_sequence_including_notimestamps), tok.eot, 40)[0]
        stamped = greedy_decode(model, feats, list(tok.sot_sequence), tok.eot, 40, tok.timestamp_begin)[0]
    assert stamped and len(stamped) < 40 and all(t < tok.eot for t in stamped)
    assert tok.decode(stamped).strip() and tok.decode(plain).strip()


def test_student_window_policy_survives_the_labelers_option_checks():
    """A student's 2 s windows are not the teacher's 10/20/30 s steps, and must not be refused."""
    options = student_options(WindowPolicy(True, 1.0, 0.5, 2.0))
    assert options.window_for(1.0) == 2.0 and options.window_for(3.2) == 4.0
    assert options.as_dict()["min_window_s"] == 2.0 and options.as_dict()["window_step_s"] == 1.0


def test_teacher_floor_and_student_policy_are_distinct_types():
    """The labeler holds one policy or the other; neither is checked by the other's rules."""
    assert isinstance(LabelOptions().windows, ContextFloor)
    assert isinstance(student_options(WindowPolicy()).windows, WindowPolicy)
    with pytest.raises(ValueError, match="min_window_s"):
        ContextFloor(2.0)  # a student's minimum is no teacher floor
    assert ContextFloor(10.0) != WindowPolicy(min_s=10.0)


def _config(tmp: Path, manifest: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["model"].update(teacher="tiny.en", lr=1e-3, warmup_steps=2, val_max_tokens=12)
    cfg["data"].update(
        train_manifest=str(manifest),
        cache_dir=str(tmp / "cache"),
        batch_size=4,
        val_fraction=0.25,
        augment_copies=1,
    )
    t = cfg["trainer"]
    t.update(
        default_root_dir=str(tmp / "run"),
        max_epochs=None,
        max_steps=STEPS,
        max_time=None,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
    )
    t["logger"]["init_args"]["save_dir"] = str(tmp / "run")
    t["callbacks"][0]["init_args"].update(dirpath=str(tmp / "run" / "checkpoints"), save_top_k=0)  # last only
    path = tmp / "student.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_losses(run: Path) -> list[tuple[int, float]]:
    out = []
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):  # one per attempt (resume)
        with open(path) as f:
            out += [(int(r["step"]), float(r["train/ce"])) for r in csv.DictReader(f) if r.get("train/ce")]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, an4_fixture):
    """One short real training run on the fixture clips (tiny.en teacher, 2-layer student)."""
    tmp = tmp_path_factory.mktemp("student")
    manifest = write_manifest(tmp / "train.jsonl", fixture_lines(copies=1))
    cfg = _config(tmp, manifest)
    assert cli_main(["train", "--config", str(cfg)]) == 0
    return tmp, cfg


def test_training_loss_falls_and_run_describes_itself(trained):
    tmp, _ = trained
    run = tmp / "run"
    losses = [ce for _, ce in _train_losses(run)]
    assert len(losses) >= STEPS - 1
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, f"train CE did not fall: {losses}"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["teacher"] == "tiny.en" and saved["trainer"]["max_steps"] == STEPS
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    desc = ckpt["asr_distill"]
    assert list(desc["layout"]["decoder_layers"]) == [0, 3]
    assert desc["label_provenance"]["train"]["sha256"]
    assert not any(k.startswith("_teacher") for k in ckpt["state_dict"]), "the teacher leaked into the ckpt"


def _global_step(run: Path) -> int:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["global_step"]


def test_resume_continues_the_step_count(trained):
    tmp, cfg = trained
    run = tmp / "run"
    assert _global_step(run) == STEPS
    assert cli_main(["train", "--config", str(cfg), "--trainer.max_steps", str(STEPS + 4)]) == 0
    assert _global_step(run) == STEPS + 4
    steps = [s for s, _ in _train_losses(run)]
    assert max(steps) >= STEPS and min(s for s in steps if s >= STEPS) >= STEPS  # no restart from 0


def test_second_training_in_the_same_folder_is_refused(trained, capsys):
    tmp, cfg = trained
    run = tmp / "run"
    before = _global_step(run)
    with exclusive_lock(run / ".train.lock", run, "test holds it"):
        rc = cli_main(["train", "--config", str(cfg), "--trainer.max_steps", str(before + 2)])
    assert rc == 2
    assert "another process" in capsys.readouterr().err
    assert _global_step(run) == before  # nothing was trained or overwritten


def test_checkpoint_write_is_all_or_nothing(tmp_path, monkeypatch):
    """Dying between writing the bytes and the rename leaves the previous checkpoint whole.

    Lightning's own IO writes the final name in place; ours writes a temporary one first.
    """
    from asr_distill.student import checkpoint_io

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "w": torch.ones(1000)}, path)

    def crash(src, dst):
        assert Path(src).stat().st_size > 4000  # the new checkpoint was written in full, elsewhere
        raise OSError("killed")

    monkeypatch.setattr(checkpoint_io.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        io.save_checkpoint({"global_step": 4, "w": torch.ones(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_export_round_trip_whisper_and_faster_whisper(trained, an4_fixture):
    from faster_whisper import WhisperModel

    from asr_distill.label import LabelRun, label
    from asr_distill.student.export import load_student_checkpoint, student_teacher
    from asr_distill.teacher import Teacher

    tmp, _ = trained
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    pt, ct2_dir = tmp / "student.pt", tmp / "student_ct2"
    assert cli_main(["export", str(ckpt), "--out", str(pt), "--ct2", str(ct2_dir)]) == 0

    module = load_student_checkpoint(ckpt)
    loaded = whisper.load_model(str(pt), device="cpu")
    assert loaded.dims == module.model.dims
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    audio = load_audio(an4_fixture.parent / "audio" / "an406-fcaw-b.flac")
    # A 16-step student may still loop: one temperature and a token cap keep the test short.
    result = whisper.transcribe(
        loaded,
        audio,
        language="en",
        fp16=False,
        temperature=0.0,
        condition_on_previous_text=False,
        sample_len=24,
    )
    assert isinstance(result["text"], str) and result["segments"] is not None

    teacher, options = student_teacher(pt)
    assert options.window_for(2.5) == 3.0  # the policy travelled with the export
    options = dataclasses.replace(options, temperatures=(0.0,), max_tokens=24)
    two = write_manifest(tmp / "two.jsonl", fixture_lines()[:2])
    exported = [r.text for r in label(two, LabelRun(teacher, options=options))]
    in_training = Teacher("ckpt", module.model, "x", "ckpt")
    in_memory = [r.text for r in label(two, LabelRun(in_training, options=options))]
    assert len(exported) == 2 and exported == in_memory

    fw = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")
    segments, info = fw.transcribe(
        audio,
        language="en",
        beam_size=1,
        temperature=0.0,
        max_new_tokens=24,
        without_timestamps=True,
        condition_on_previous_text=False,
    )
    list(segments)  # the generator runs the model: the exported folder must load and decode
    assert info.duration == pytest.approx(len(audio) / 16000, abs=0.01)


def test_ct2_writer_reproduces_the_packaged_model(tmp_path, tiny_teacher, an4_fixture):
    """Writing tiny.en back to CTranslate2 gives faster-whisper the same transcript as the packaged file."""
    from faster_whisper import WhisperModel

    from asr_distill.student.export import export_ct2

    out = export_ct2(tiny_teacher.model, tmp_path / "ct2", tiny_teacher.ct2_dir, {"test": True})
    audio = load_audio(an4_fixture.parent / "audio" / "an417-fjlp-b.flac")
    texts = []
    for d in (tiny_teacher.ct2_dir, out):
        fw = WhisperModel(str(d), device="cpu", compute_type="float32")
        segments, _ = fw.transcribe(audio, language="en", beam_size=1, without_timestamps=True)
        texts.append(" ".join(s.text.strip() for s in segments))
    assert texts[0] and texts[0] == texts[1]
