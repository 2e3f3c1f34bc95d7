"""The student's data switches for keeping general competence, each checked on the fixture clips.

Waveform augmentation (speed, pitch, noise, reverb, telephone) on real AN4 audio; replay of
general-domain items at a ratio, marked in the batches; validation over named sets. The
training tests run a few real steps with tiny.en as teacher and starting model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import fixture_lines, write_manifest

from asr_distill.audio import load_audio
from asr_distill.student.augment import EFFECTS, WaveAugment, speed_factors
from asr_distill.student.data import (
    IN_DOMAIN,
    StudentDataModule,
    WindowBatchSampler,
    replay_allocation,
)

CLIP = "an406-fcaw-b.flac"  # 4.0 s


@pytest.fixture(scope="module")
def clip(an4_fixture) -> np.ndarray:
    return load_audio(an4_fixture.parent / "audio" / CLIP)


@pytest.mark.parametrize("name", list(EFFECTS))
def test_each_effect_changes_the_clip_the_same_way_per_seed(clip, name):
    aug = WaveAugment((name,), prob=1.0)
    out = aug(clip, random.Random("a|1"))
    assert out.dtype == np.float32 and np.isfinite(out).all() and np.abs(out).max() <= 1.0
    n = min(len(out), len(clip))
    assert np.abs(out[:n] - clip[:n]).mean() > 1e-3, "the effect left the clip as it was"
    assert np.array_equal(out, aug(clip, random.Random("a|1"))), "the same seed gave another copy"
    other = aug(clip, random.Random("a|2"))
    assert len(other) != len(out) or not np.array_equal(other, out), "another seed gave the same copy"
    if name == "speed":
        assert len(clip) / 1.1 - 1 <= len(out) <= len(clip) / 0.9 + 1 and len(out) != len(clip)
    else:
        assert len(out) == len(clip)


def test_speed_never_outgrows_the_window(clip):
    assert speed_factors(0.9, 1.1, 100, 1000) == [0.9, 0.95, 1.0, 1.05, 1.1]
    assert speed_factors(0.9, 1.1, 100, 100) == [1.0, 1.05, 1.1]  # slowing down would not fit
    aug = WaveAugment(("speed",), prob=1.0)
    assert all(len(aug(clip, random.Random(s), len(clip))) <= len(clip) for s in range(6))


def test_noise_lands_in_the_snr_range(clip):
    aug = WaveAugment(("noise",), prob=1.0, snr_db=(10.0, 10.0))
    out = aug(clip, random.Random(0))
    snr = 10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum((out - clip).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)


def test_telephone_removes_the_band_above_4khz(clip):
    out = WaveAugment(("telephone",), prob=1.0)(clip, random.Random(0))

    def high_share(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x)) ** 2
        return power[np.fft.rfftfreq(len(x), 1 / 16000) > 4000].sum() / power.sum()

    assert high_share(clip) > 1e-3 and high_share(out) < 0.05 * high_share(clip)


def test_pitch_raises_the_voice_by_a_ratio_in_range_and_keeps_the_tempo():
    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 200 * t) * (t < 1)).astype(np.float32)  # 1 s of 200 Hz, 1 s silence
    aug = WaveAugment(("pitch",), prob=1.0, pitch=(1.2, 1.3))
    for seed in range(4):
        out = aug(tone, random.Random(seed))
        spectrum = np.abs(np.fft.rfft(out[:16000]))
        peak = np.fft.rfftfreq(16000, 1 / 16000)[np.argmax(spectrum)]
        assert peak in (240.0, 250.0), peak  # 6:5 or 5:4 of 200 Hz
        assert len(out) == len(tone) and np.abs(out[16000 + 1600 :]).max() < 0.02  # the pause stays a pause
    with pytest.raises(ValueError, match="pitch range"):
        WaveAugment(("pitch",), pitch=(1.4, 1.5))


def test_augment_signature_names_every_setting():
    base = WaveAugment(("noise", "speed"), 0.5)
    assert base.signature() == WaveAugment(("speed", "noise"), 0.5).signature()  # order is EFFECTS'
    others = [WaveAugment(("noise",), 0.5), WaveAugment(("noise", "speed"), 0.6)]
    others.append(WaveAugment(("noise", "speed"), 0.5, snr_db=(0.0, 10.0)))
    assert len({base.signature(), *(o.signature() for o in others)}) == 4
    # the pitch range names the folder only where pitch is applied: older copies keep their folders
    assert WaveAugment(("noise", "speed"), 0.5, pitch=(1.1, 1.2)).signature() == base.signature()
    voiced = WaveAugment(("pitch",), 0.5)
    assert voiced.signature() != WaveAugment(("pitch",), 0.5, pitch=(1.1, 1.2)).signature()


@pytest.mark.parametrize(
    "switches, setting",
    [
        ({"augment": ["echo"]}, "augment"),
        ({"augment": ["noise"], "augment_prob": 0.0}, "augment_prob"),
        ({"replay_ratio": 0.3}, "replay_manifest"),
        ({"replay_manifest": "general.jsonl"}, "replay_ratio"),
        ({"replay_manifest": "general.jsonl", "replay_ratio": -1.0}, "replay_ratio"),
        ({"val_manifests": {"a/b": "x.jsonl"}}, "val_manifests"),
        ({"val_manifests": {IN_DOMAIN: "x.jsonl"}}, "val_manifests"),
    ],
)
def test_bad_data_switches_are_refused_by_name(switches, setting):
    with pytest.raises(ValueError, match=setting):
        StudentDataModule("train.jsonl", **switches)


def test_replay_draws_the_same_count_per_window_every_epoch():
    windows = [3.0] * 6 + [5.0] * 4 + [3.0] * 5 + [5.0] * 3  # 10 in-domain, then a pool of 8
    assert replay_allocation(windows[10:], 4) == {3.0: 3, 5.0: 1}
    sampler = WindowBatchSampler(windows, 3, True, seed=1, replay_from=10, replay_count=4)
    n_batches = len(sampler)
    draws = []
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == n_batches
        flat = [i for b in batches for i in b]
        assert sorted(i for i in flat if i < 10) == list(range(10))
        replayed = [i for i in flat if i >= 10]
        assert len(replayed) == len(set(replayed)) == 4
        assert all(len({windows[i] for i in b}) == 1 for b in batches)
        draws.append(tuple(sorted(replayed)))
    assert len(set(draws)) > 1, "every epoch replayed the same items"
    again = WindowBatchSampler(windows, 3, True, seed=1, replay_from=10, replay_count=4)
    assert [tuple(sorted(i for b in again for i in b if i >= 10)) for _ in range(3)] == draws


def test_replay_larger_than_its_pool_uses_every_item_before_repeating():
    sampler = WindowBatchSampler([2.0] * 3 + [2.0] * 2, 8, True, replay_from=3, replay_count=5)
    replayed = [i for b in sampler for i in b if i >= 3]
    assert len(replayed) == 5 and {replayed.count(i) for i in (3, 4)} <= {2, 3}


# -- real steps on the fixture clips ------------------------------------------------------


def _module(**switches):
    from asr_distill.student.module import StudentModule

    return StudentModule(
        teacher="tiny.en",
        init="tiny.en",
        ce_weight=1.0,
        kl_weight=0.0,
        lr=1e-3,
        warmup_steps=1,
        val_max_tokens=12,
        **switches,
    )


def _rows(batch: dict) -> dict:
    return {"texts": batch["texts"], "replay": batch["replay"].tolist(), "sets": batch["sets"]}


class Seen(L.Callback):
    """Keeps what each training and validation batch held."""

    def __init__(self):
        self.train: list[dict] = []
        self.val: list[dict] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.train.append({"epoch": trainer.current_epoch, **_rows(batch)})

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self.val.append(_rows(batch))


def _fit(module, dm, tmp: Path, callbacks: tuple = (), **trainer_args):
    L.seed_everything(0)
    seen = Seen()
    quiet = dict.fromkeys(
        ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"), False
    )
    args = quiet | dict(
        num_sanity_val_steps=0, default_root_dir=str(tmp / "run"), callbacks=[seen, *callbacks]
    )
    trainer = L.Trainer(**(args | trainer_args))
    trainer.fit(module, dm)
    return trainer, seen


def _dm(train: Path, tmp: Path, **switches) -> StudentDataModule:
    """The fixture clips in batches of 4, a quarter held out, one cache, no SpecAugment, and ``switches``."""
    common = dict(val_fraction=0.25, batch_size=4, cache_dir=str(tmp / "cache"), spec_augment=False)
    return StudentDataModule(str(train), **(common | dict(augment_copies=0) | switches))


@pytest.fixture(scope="module")
def manifests(tmp_path_factory, an4_fixture):
    """The fixture clips as in-domain labels, and the same clips upper-cased as a 'general' set."""
    tmp = tmp_path_factory.mktemp("student_data")
    train = write_manifest(tmp / "train.jsonl", fixture_lines())
    general = [dict(d, text=d["text"].upper()) for d in fixture_lines(copies=2)[8:]]
    return train, write_manifest(tmp / "general.jsonl", general), tmp


@pytest.mark.slow
def test_replay_items_are_mixed_in_at_the_ratio_and_marked(manifests):
    train, general, tmp = manifests
    dm = _dm(train, tmp, val_fraction=0.0, replay_manifest=str(general), replay_ratio=0.5)
    trainer, seen = _fit(_module(lwf_weight=0.5), dm, tmp, max_epochs=2, limit_val_batches=0)
    assert trainer.global_step == len(seen.train) > 0
    for epoch in (0, 1):
        batches = [b for b in seen.train if b["epoch"] == epoch]
        rows = [row for b in batches for row in zip(b["texts"], b["replay"], strict=True)]
        assert sum(r for _, r in rows) == 4 and len(rows) == 12  # 8 in-domain + 0.5 x 8 replayed
        assert all(r == t.isupper() for t, r in rows), "a replay row is unmarked, or the reverse"
    assert any(any(b["replay"]) and not all(b["replay"]) for b in seen.train), "replay never shared a batch"
    assert trainer.callback_metrics["train/lwf"] >= 0  # the model side read the marks


@pytest.mark.slow
def test_augmented_copies_are_cached_per_setting_and_validation_stays_clean(manifests):
    from asr_distill.student.data import FeatureCache

    train, _, tmp = manifests
    module = _module()
    dm = _dm(train, tmp, augment=list(EFFECTS), augment_prob=1.0, augment_copies=1)
    trainer, seen = _fit(module, dm, tmp, max_steps=2, limit_val_batches=1)
    assert trainer.global_step == 2 and seen.val

    spec = module.feature_spec()
    cache = FeatureCache(dm.hparams.cache_dir, spec, None, 0, dm.wave)
    train_items, val_items = dm.train_set.items, dm.val_set.items
    for it in train_items:
        window = spec.policy.window_for(it.duration)
        clean, augmented = cache.load(it, window, 0), cache.load(it, window, 1)
        assert clean.shape == augmented.shape and (clean - augmented).abs().mean() > 1e-2, it.id
    for it in val_items:  # validation is encoded clean, once
        assert not cache.path(it, spec.policy.window_for(it.duration), 1).exists()
    assert all(s == IN_DOMAIN for b in seen.val for s in b["sets"])

    noise_only = _dm(train, tmp, augment=["noise"], augment_copies=1)
    other = FeatureCache(dm.hparams.cache_dir, spec, None, 0, noise_only.wave)
    it, window = train_items[0], spec.policy.window_for(train_items[0].duration)
    assert other.path(it, window, 0) == cache.path(it, window, 0)  # the clean copy is shared
    assert other.path(it, window, 1) != cache.path(it, window, 1)  # a stale copy is never served
    assert not other.path(it, window, 1).exists()
    reseeded = FeatureCache(dm.hparams.cache_dir, spec, None, 1, dm.wave)
    assert reseeded.path(it, window, 1) != cache.path(it, window, 1)


def test_unfrozen_training_draws_fresh_copies_and_validation_stays_clean(manifests, tiny_teacher):
    from whisper.tokenizer import get_tokenizer

    from asr_distill.features import log_mel_batch
    from asr_distill.student.data import FeatureSpec
    from asr_distill.student.short_context import WindowPolicy

    train, _, _ = manifests
    tok = get_tokenizer(False)
    spec = FeatureSpec(tiny_teacher.model, "x", tok, tuple(tok.sot_sequence), WindowPolicy(), False)
    assert spec.cache_through_block is None  # the whole encoder's output unless the model asks
    dm = StudentDataModule(str(train), val_fraction=0.25, augment=["noise", "speed"], augment_prob=1.0)
    dm.attach(spec)
    dm.setup("fit")
    a, b = dm.train_set[0]["mel"], dm.train_set[0]["mel"]
    it = dm.train_set.items[0]
    clean = log_mel_batch([load_audio(it.audio_filepath)], dm.train_set.windows[0], 80)[0]
    assert not torch.equal(a, b) and not torch.equal(a, clean)
    val_clean = log_mel_batch([load_audio(dm.val_set.items[0].audio_filepath)], dm.val_set.windows[0], 80)[0]
    assert torch.equal(dm.val_set[0]["mel"], val_clean) and torch.equal(dm.val_set[0]["mel"], val_clean)


@pytest.mark.slow
def test_validation_covers_every_named_set_and_selects_on_the_union(manifests):
    from lightning.pytorch.callbacks import ModelCheckpoint

    train, general, tmp = manifests
    short = tmp / "general_short.jsonl"
    write_manifest(short, [json.loads(x) for x in general.read_text().splitlines()[:3]])
    dm = _dm(train, tmp, val_manifests={"general": str(short)})
    ckpt = ModelCheckpoint(dirpath=str(tmp / "ckpt"), monitor="val/wer", mode="min", save_top_k=1)
    trainer, seen = _fit(_module(), dm, tmp, (ckpt,), max_steps=2, enable_checkpointing=True)
    sets = [s for b in seen.val for s in b["sets"]]
    n_in_domain = len(dm.val_set.items) - 3
    assert n_in_domain >= 1 and sets.count("general") == 3 and sets.count(IN_DOMAIN) == n_in_domain
    metrics = trainer.callback_metrics
    assert "val/wer" in metrics and ckpt.best_model_score is not None and ckpt.monitor == "val/wer"
    assert {"val/wer_general", f"val/wer_{IN_DOMAIN}"} <= set(metrics), sorted(metrics)
    assert "val_general" in dm.provenance()
