"""The short-window teacher: targets, a few real adaptation steps, the derived checkpoint, agreement.

tiny.en adapts on the eight committed AN4 clips for two steps (about 10 s on one core): enough
to check the plumbing (what trains, what is saved, what loads and labels), not the quality,
which ``benchmarks/short_window.py`` measures on held-out speech.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import whisper
from conftest import fixture_lines, write_manifest

from asr_distill import TeacherNotFoundError, load_teacher
from asr_distill.label import LabelRun, label_to_file
from asr_distill.records import TeacherLabel
from asr_distill.safe_load import CheckpointError
from asr_distill.teacher.options import ContextFloor, LabelOptions
from asr_distill.teacher.resolve import DERIVED_KEY, sha256_files
from asr_distill.teacher.short_window import (
    AdaptConfig,
    Derivation,
    adapt,
    agreement,
    derivation,
    read_targets,
    save_derived,
    target_nll,
    targets,
    teacher_forcing,
)
from asr_distill.testing.labels import make_label, write_labels

CONFIG = AdaptConfig(window_s=10.0, steps=2, batch_size=4, lora_rank=4, seed=0)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_manifest(tmp_path_factory.mktemp("sw") / "pool.jsonl", fixture_lines())


@pytest.fixture(scope="module")
def target_set(tiny_teacher, manifest):
    torch.set_num_threads(1)
    return targets(tiny_teacher, manifest, manifest.with_name("targets.jsonl"), progress=False)


@pytest.fixture(scope="module")
def derived(tiny_teacher, target_set, manifest):
    """The adapted teacher as adapt returned it, and the path it was saved to."""
    adapted = adapt(tiny_teacher, target_set, CONFIG, progress=False)
    return adapted, save_derived(adapted, manifest.with_name("tiny_w10.pt"))


def test_targets_are_the_teachers_greedy_30s_tokens(tiny_teacher, target_set, manifest):
    assert target_set.data.clips == len(target_set.items) == 8
    assert target_set.data.manifest_sha256 == sha256_files([manifest])
    labels = {
        d["id"]: d for d in map(json.loads, manifest.with_name("targets.jsonl").read_text().splitlines())
    }
    tok = whisper.tokenizer.get_tokenizer(False)
    for t in target_set.items:
        assert labels[t.id]["window_s"] == 30.0 and labels[t.id]["temperature"] == 0.0
        assert tok.decode(list(t.tokens)).strip() == labels[t.id]["text"]
    again = read_targets(
        manifest.with_name("targets.jsonl"), tiny_teacher, manifest
    )  # a rerun reads them back
    assert again == target_set


def test_the_unadapted_teacher_predicts_its_own_targets_at_30s(tiny_teacher, target_set):
    from asr_distill.audio import load_audio
    from asr_distill.features import encode_mels, log_mel_batch

    model, items = tiny_teacher.model, list(target_set.items[:3])
    tokens, gold, stop = teacher_forcing(model, items)
    assert stop.sum() == len(items)  # one end of text per row, right after its last text token
    with torch.no_grad():
        mels = log_mel_batch([load_audio(t.audio_filepath) for t in items], 30.0, model.dims.n_mels)
        logits = model.decoder(tokens, encode_mels(model, mels))
    mask = gold != -100
    assert torch.equal(logits.argmax(-1)[mask], gold[mask])  # greedy outputs, teacher-forced
    tok = whisper.tokenizer.get_tokenizer(False)
    assert target_nll(logits, gold, stop, tok.eot, tok.timestamp_begin) < 1.0


def test_target_nll_is_zero_when_every_target_and_end_is_certain():
    gold = torch.tensor([[-100, 5, -100]])
    stop = torch.tensor([[False, False, True]])
    logits = torch.full((1, 3, 12), -1e4)
    logits[0, 1, 5] = 0.0
    logits[0, 2, 9:] = 0.0  # the end's mass spread over the "timestamps" 9..11
    assert target_nll(logits, gold, stop, eot=7, timestamp_begin=9).item() == pytest.approx(0.0, abs=1e-4)


def test_adapting_moves_the_encoder_only_and_saves_a_loadable_derived_teacher(tiny_teacher, derived):
    adapted, path = derived
    before, after = tiny_teacher.model.state_dict(), adapted.model.state_dict()
    assert after.keys() == before.keys()  # adapters merged: openai-whisper's keys again
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith("encoder."))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("encoder.blocks."))
    assert torch.equal(after["encoder.conv1.weight"], before["encoder.conv1.weight"])
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) >= {"dims", "model_state_dict", "alignment_heads", DERIVED_KEY}
    assert whisper.load_model(str(path), device="cpu").dims == adapted.model.dims


def test_load_teacher_exposes_the_provenance(tiny_teacher, derived, manifest):
    adapted, path = derived
    teacher = load_teacher(path)
    assert teacher.name == "tiny_w10" and teacher.weights_sha256 == sha256_files([path])
    d = derivation(teacher)
    assert d == adapted.derivation and isinstance(d, Derivation)
    assert d.parent == "tiny.en" and d.parent_weights_sha256 == tiny_teacher.weights_sha256
    assert d.config == CONFIG and d.method == "lora"
    assert d.data.manifest == str(manifest) and d.data.clips == 8 and d.data.audio_s > 0
    for k, v in adapted.model.state_dict().items():
        assert torch.equal(teacher.model.state_dict()[k], v), k  # float32: what was trained is what loads
    assert derivation(tiny_teacher) is None


def test_labeling_with_the_derived_teacher_carries_its_provenance(derived, manifest, tmp_path):
    _, path = derived
    teacher = load_teacher(path)
    out = tmp_path / "labels.jsonl"
    options = LabelOptions(windows=ContextFloor(10.0))
    label_to_file(manifest, out, LabelRun(teacher, options=options, batch_size=8, precision="fp32"))
    labels = [TeacherLabel.from_dict(json.loads(x)) for x in out.read_text().splitlines()]
    assert len(labels) == 8 and any(lab.text for lab in labels)
    assert all(lab.window_s == 10.0 for lab in labels if lab.temperature == 0.0)
    assert all(lab.provenance.derived == teacher.derived for lab in labels)
    assert labels[0].provenance.derived["parent"] == "tiny.en"


def test_the_same_seed_adapts_to_the_same_weights_and_kl_adds_to_the_loss(tiny_teacher, target_set):
    config = AdaptConfig(steps=1, batch_size=2, lora_rank=2, seed=3)
    a = adapt(tiny_teacher, target_set, config, progress=False)
    b = adapt(tiny_teacher, target_set, config, progress=False)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    with_kl = adapt(tiny_teacher, target_set, dataclasses.replace(config, kl_weight=1.0), progress=False)
    assert with_kl.derivation.loss_start > a.derivation.loss_start  # same first batch, plus KL > 0


def test_top_block_weights_train_without_adapters(tiny_teacher, target_set):
    config = AdaptConfig(steps=1, batch_size=2, lora_rank=0, train_encoder_layers=1, lr=1e-4)
    adapted = adapt(tiny_teacher, target_set, config, progress=False)
    before, after = tiny_teacher.model.state_dict(), adapted.model.state_dict()
    top = f"encoder.blocks.{tiny_teacher.model.dims.n_audio_layer - 1}."
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(top) or k.startswith("encoder.ln_post.") for k in moved)
    assert adapted.derivation.method == "weights"


def test_bad_settings_are_refused(tiny_teacher, target_set):
    with pytest.raises(ValueError, match="window_s"):
        AdaptConfig(window_s=30.0)
    with pytest.raises(ValueError, match="steps"):
        AdaptConfig(steps=0)
    with pytest.raises(ValueError, match="train_encoder_layers is 9"):
        adapt(tiny_teacher, target_set, AdaptConfig(train_encoder_layers=9), progress=False)


def test_targets_of_another_teacher_are_refused(tiny_teacher, manifest, tmp_path):
    path = write_labels(tmp_path / "other.jsonl", [make_label("yes", window_s=30.0)])
    with pytest.raises(ValueError, match="labeled by base"):
        read_targets(path, tiny_teacher, manifest)


def test_a_corrupt_or_invalid_derived_checkpoint_is_a_clear_error(tiny_teacher, derived, tmp_path):
    _, path = derived
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_teacher(cut)
    dims = torch.load(path, weights_only=True)["dims"]
    bad_block = tmp_path / "bad_block.pt"
    torch.save({"dims": dims, "model_state_dict": {}, DERIVED_KEY: {"parent": "tiny.en"}}, bad_block)
    with pytest.raises(TeacherNotFoundError, match="parent_weights_sha256"):
        load_teacher(bad_block)
    no_weights = tmp_path / "no_weights.pt"
    torch.save(
        {"dims": dims, "model_state_dict": {}, DERIVED_KEY: {"parent_weights_sha256": "0"}}, no_weights
    )
    with pytest.raises(TeacherNotFoundError, match="do not fit its 'dims'"):
        load_teacher(no_weights)
    junk = dataclasses.replace(tiny_teacher, derived={"parent_weights_sha256": "0"})
    with pytest.raises(ValueError, match="provenance cannot be read"):
        derivation(junk)


def test_agreement_counts_texts_equal_after_the_normaliser(tmp_path):
    ref = [
        make_label("Hello, world.", id="u1"),
        make_label("enter seven", id="u2"),
        make_label("rubout G-M-E-F", id="u3"),
        make_label("yes", id="u4"),
    ]
    other = [
        make_label("hello world", id="u1"),  # same after whisper_en, not as written
        make_label("enter seven", id="u2"),
        make_label("rubout GMEF", id="u3"),  # the written form the short window changes
        make_label("no", id="u4"),
        make_label("extra", id="u5"),  # only in the other: not compared
    ]
    a = agreement(write_labels(tmp_path / "ref.jsonl", ref), write_labels(tmp_path / "other.jsonl", other))
    assert (a.utterances, a.same, a.same_raw, a.differing) == (4, 2, 1, ("u3", "u4"))
    assert a.fraction == 0.5 and a.to_dict()["fraction"] == 0.5
    assert agreement(ref, ref).fraction == 1.0  # records work as well as files
    assert agreement(ref, other, normaliser="format_insensitive").differing == ("u4",)
    with pytest.raises(ValueError, match="no label in the other"):
        agreement(other, ref)
    with pytest.raises(ValueError, match="no labels"):
        agreement([], ref)


def test_the_command_writes_a_derived_teacher(manifest, target_set, tmp_path, capsys):
    from asr_distill.cli import main

    out, done = tmp_path / "w10.pt", manifest.with_name("targets.jsonl")  # targets resumed: none to label
    argv = ["adapt-window", str(manifest), "--out", str(out), "--teacher", "tiny.en", "--targets", str(done)]
    code = main(
        [*argv, "--steps", "1", "--batch-size", "2", "--lora-rank", "2", "--threads", "1", "--no-progress"]
    )
    assert code == 0 and "adapted tiny.en to 10 s windows" in capsys.readouterr().out
    d = derivation(load_teacher(out))
    assert d.config.steps == 1 and d.config.lora_rank == 2 and d.data.targets == str(done)
