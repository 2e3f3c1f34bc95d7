"""The student's anti-forgetting switches, each trained for a few real steps on the fixture clips.

tiny.en is teacher and starting model (its vocabulary, so no KL to the teacher); the eight
AN4 clips are the data. Each switch is checked for doing what it says: LwF adds a positive
term, L2-SP keeps weights nearer their start, LoRA trains adapters only and exports as a
plain Whisper, ``train_encoder_layers`` moves the top encoder blocks and nothing below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import whisper
from conftest import fixture_lines, write_manifest

from asr_distill.audio import load_audio
from asr_distill.features import encode_mels, log_mel_batch
from asr_distill.student.encoder_split import bottom_sha, encoder_bottom, encoder_top
from asr_distill.student.regularise import LORA_TARGETS, label_rows, lora_target_names, lwf_rows

STEPS = 2
CLIP = "an406-fcaw-b.flac"


def _mel(an4_fixture: Path, n_mels: int = 80) -> torch.Tensor:
    audio = load_audio(an4_fixture.parent / "audio" / CLIP)
    return log_mel_batch([audio], 5.0, n_mels)  # (1, 80, 500)


def test_encoder_bottom_then_top_is_the_whole_encoder(tiny_teacher, an4_fixture):
    model, mel = tiny_teacher.model, _mel(an4_fixture)
    with torch.no_grad():
        whole = encode_mels(model, mel)
        for k in (0, 2, 4):
            split = encoder_top(model, encoder_bottom(model, mel, k), k)
            assert torch.allclose(split, whole, atol=1e-4), k
    assert whole.shape == (1, 250, model.dims.n_audio_state)


def test_bottom_sha_ignores_the_top_blocks_and_names_the_split(tiny_teacher):
    import copy

    model = copy.deepcopy(tiny_teacher.model)
    before = bottom_sha(model, 2)
    assert before != bottom_sha(model, 3)
    with torch.no_grad():
        model.encoder.blocks[3].mlp[0].weight.add_(1.0)  # a top block trains: the cache stays valid
        model.encoder.ln_post.weight.add_(1.0)
    assert bottom_sha(model, 2) == before
    with torch.no_grad():
        model.encoder.blocks[1].mlp[0].weight.add_(1.0)  # a cached block changed: a new key
    assert bottom_sha(model, 2) != before


def test_lora_targets_cover_the_decoder_and_the_trained_encoder_blocks(tiny_teacher):
    model = tiny_teacher.model
    names = lora_target_names(model, LORA_TARGETS, encoder_blocks=[2, 3])
    n_dec = model.dims.n_text_layer
    assert len([n for n in names if n.startswith("decoder.")]) == n_dec * 10  # self 4, cross 4, mlp 2
    assert {n.split(".")[2] for n in names if n.startswith("encoder.")} == {"2", "3"}
    assert "decoder.blocks.0.cross_attn.key" in names and "decoder.blocks.3.mlp.2" in names
    queries = lora_target_names(model, ["query"], encoder_blocks=[])
    assert len(queries) == 2 * n_dec and all(n.endswith("query") for n in queries)
    with pytest.raises(ValueError, match="lora_targets"):
        lora_target_names(model, ["conv1"], encoder_blocks=[])
    with pytest.raises(ValueError, match="lora_targets"):
        lora_target_names(model, [], encoder_blocks=[])


def test_lwf_rows_are_the_replay_rows_when_marked():
    dev = torch.device("cpu")
    assert lwf_rows({}, 3, dev).tolist() == [True, True, True]
    marked = {"replay": torch.tensor([False, True, False])}
    assert lwf_rows(marked, 3, dev).tolist() == [False, True, False]
    unmarked = {"replay": torch.tensor([False, False, False])}  # no replay in this batch: all rows
    assert lwf_rows(unmarked, 3, dev).tolist() == [True, True, True]


def test_label_rows_leave_out_the_replay_rows_only_when_asked():
    dev = torch.device("cpu")
    marked = {"replay": torch.tensor([False, True, False])}
    assert label_rows(marked, 3, True, dev).tolist() == [True, True, True]
    assert label_rows(marked, 3, False, dev).tolist() == [True, False, True]
    assert label_rows({}, 2, False, dev).tolist() == [True, True]  # nothing marked: all rows


def test_without_replay_labels_cross_entropy_is_taken_on_the_domain_rows_only():
    """The CE of a batch with a replay row is the CE of its other rows; a replay-only batch adds 0."""
    import torch.nn.functional as F

    from asr_distill.student.data import IGNORE

    module = _module(lwf_weight=1.0, replay_labels=False)
    object.__setattr__(module, "_start", None)  # the LwF term is tested elsewhere; CE alone here
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=gen)
    targets = torch.tensor([[1, 2, 3, IGNORE, IGNORE], [4, 5, 6, 7, 8]])
    batch = {"targets": targets, "replay": torch.tensor([False, True])}
    ce = module._loss_terms(batch, None, None, logits)["ce"][1]
    assert ce.item() == pytest.approx(F.cross_entropy(logits[0, :3], targets[0, :3]).item(), rel=1e-5)
    batch["replay"] = torch.tensor([True, True])
    assert module._loss_terms(batch, None, None, logits)["ce"][1].item() == 0.0
    batch["replay"] = torch.tensor([False, False])  # no replay rows: the usual mean over all tokens
    every = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE)
    assert module._loss_terms(batch, None, None, logits)["ce"][1].item() == pytest.approx(
        every.item(), rel=1e-5
    )


def _module(**switches):
    from asr_distill.student.module import StudentModule

    return StudentModule(
        teacher="tiny.en", init="tiny.en", ce_weight=1.0, kl_weight=0.0, lr=1e-3, warmup_steps=1, **switches
    )


@pytest.mark.parametrize(
    "switches, setting",
    [
        ({"train_encoder_layers": 2, "frozen_encoder": False}, "frozen_encoder"),
        ({"train_encoder_layers": 5}, "train_encoder_layers"),
        ({"lwf_weight": -1.0}, "lwf_weight"),
        ({"replay_labels": False}, "lwf_weight"),  # replay rows would then train nothing
        ({"lora_rank": 2, "lora_targets": ["nonsense"]}, "lora_targets"),
        ({"lora_rank": 2, "val_wise_alpha": 0.5}, "val_wise_alpha"),  # adapters mix only once merged
        ({"train_decoder": False}, "train_decoder"),  # frozen encoder, no top blocks: nothing would train
        ({"train_decoder": False, "frozen_encoder": False, "lora_rank": 2}, "lora_rank"),  # no block to adapt
    ],
)
def test_bad_switches_are_refused_by_name(switches, setting):
    with pytest.raises(ValueError, match=setting):
        _module(**switches)


@pytest.fixture(scope="module")
def data(tmp_path_factory, an4_fixture):
    """The fixture clips as a manifest, and one encoder cache shared by every run here."""
    tmp = tmp_path_factory.mktemp("regularise")
    return write_manifest(tmp / "train.jsonl", fixture_lines()), tmp


def _fit(module, data, steps: int = STEPS, **data_options):
    """``steps`` real optimizer steps; returns the trainer and the last step's logged metrics."""
    import lightning as L

    from asr_distill.student.data import StudentDataModule
    from asr_distill.testing.student import few_steps_trainer

    manifest, tmp = data
    L.seed_everything(0)
    options = {
        "val_fraction": 0.0,
        "batch_size": 4,
        "spec_augment": False,
        "augment_copies": 0,
    } | data_options
    dm = StudentDataModule(str(manifest), cache_dir=str(tmp / "cache"), **options)
    trainer = few_steps_trainer(tmp / "run", steps)
    trainer.fit(module, dm)
    return trainer, {k: float(v) for k, v in trainer.callback_metrics.items()}, dm


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


@pytest.mark.slow
def test_train_encoder_layers_moves_the_top_blocks_only(data):
    module = _module(train_encoder_layers=2)
    start = _state(module)
    _fit(module, data)
    end = module.model.state_dict()
    moved = {k for k in start if not torch.equal(start[k], end[k])}
    assert any(k.startswith("encoder.blocks.2.") for k in moved) and any(
        k.startswith("encoder.blocks.3.") for k in moved
    )
    assert "encoder.ln_post.weight" in moved and any(k.startswith("decoder.blocks.") for k in moved)
    frozen = [k for k in start if k.startswith(("encoder.conv", "encoder.blocks.0.", "encoder.blocks.1."))]
    assert frozen and not moved.intersection(frozen), sorted(moved.intersection(frozen))


@pytest.mark.slow
def test_without_train_decoder_only_the_top_encoder_blocks_move(data):
    module = _module(train_encoder_layers=2, train_decoder=False)
    start = _state(module)
    _fit(module, data)
    end = module.model.state_dict()
    moved = {k for k in start if not torch.equal(start[k], end[k])}
    assert moved and all(
        k.startswith(("encoder.blocks.2.", "encoder.blocks.3.", "encoder.ln_post")) for k in moved
    )
    assert not any(p.requires_grad for p in module.model.decoder.parameters())


@pytest.mark.slow
def test_lora_without_train_decoder_adapts_the_top_encoder_blocks_only(data):
    module = _module(train_encoder_layers=2, train_decoder=False, lora_rank=2)
    adapted = {n.split(".lora_")[0] for n, p in module.model.named_parameters() if p.requires_grad}
    assert adapted and all(n.startswith(("encoder.blocks.2.", "encoder.blocks.3.")) for n in adapted), adapted
    start = {k.replace(".base_layer", ""): v for k, v in _state(module).items() if "lora_" not in k}
    _fit(module, data)
    assert module.merge_adapters() == len(adapted)
    end = module.model.state_dict()
    assert set(end) == set(start)  # a plain Whisper again
    moved = {k for k in start if not torch.equal(start[k], end[k])}
    assert moved and all(k.startswith(("encoder.blocks.2.", "encoder.blocks.3.")) for k in moved), moved


@pytest.mark.slow
def test_lwf_adds_a_positive_term_once_the_student_moves(data):
    module = _module(lwf_weight=0.5)
    assert module._start is not None and module._start is not module.model
    _, metrics, _ = _fit(module, data)
    assert metrics["train/lwf"] > 1e-4, metrics
    expected = metrics["train/ce"] + 0.5 * metrics["train/lwf"]
    assert metrics["train/loss"] == pytest.approx(expected, rel=1e-4)
    for p in module._start.parameters():  # the reference never trains
        assert not p.requires_grad and p.grad is None


def _distance(module, start: dict[str, torch.Tensor]) -> float:
    trained = {n for n, p in module.model.named_parameters() if p.requires_grad}
    state = module.model.state_dict()
    return sum((state[k] - start[k]).pow(2).sum().item() for k in trained)


@pytest.mark.slow
def test_l2sp_keeps_the_weights_nearer_their_start(data):
    free = _module()
    start = _state(free)
    _fit(free, data, steps=3)
    anchored = _module(l2sp_weight=1000.0)
    _, metrics, _ = _fit(anchored, data, steps=3)
    assert metrics["train/l2sp"] > 0
    d_free, d_anchored = _distance(free, start), _distance(anchored, start)
    assert d_anchored < 0.7 * d_free, (d_anchored, d_free)


@pytest.mark.slow
def test_lora_trains_adapters_only_and_exports_a_plain_whisper(data, an4_fixture, tmp_path):
    from asr_distill.student.export import export_whisper_pt, load_student_checkpoint

    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'asr_distill[lora]')")
    module = _module(lora_rank=4, lora_alpha=8.0)
    start = {k.replace(".base_layer", ""): v for k, v in _state(module).items() if "lora_" not in k}
    trainer, _, _ = _fit(module, data)
    named = dict(module.model.named_parameters())
    assert {n for n, p in named.items() if p.requires_grad} == {n for n in named if "lora_" in n}
    assert all(named[n].grad is not None for n in named if "lora_B" in n)
    for k, v in module.model.state_dict().items():  # the base weights never moved
        if "lora_" not in k:
            assert torch.equal(v, start[k.replace(".base_layer", "")]), k
    ckpt = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(ckpt)

    tokens = torch.tensor([module.prefix + module.tokenizer.encode(" go to the store")])
    with torch.no_grad():
        feats = encode_mels(module.model, _mel(an4_fixture))
        adapted = module.model.decoder(tokens, feats)
    merged = load_student_checkpoint(ckpt)
    assert not any("lora_" in k for k in merged.model.state_dict())
    pt = export_whisper_pt(merged.model, tmp_path / "student.pt", merged.describe())
    loaded = whisper.load_model(str(pt), device="cpu")
    with torch.no_grad():
        exported = loaded.decoder(tokens, encode_mels(loaded, _mel(an4_fixture)))
    assert torch.allclose(exported, adapted, atol=1e-3), (exported - adapted).abs().max()
    merged_into = [
        k for k, v in start.items() if k.startswith("decoder.") and not torch.equal(loaded.state_dict()[k], v)
    ]
    assert merged_into, "the adapters changed nothing"


@pytest.mark.slow
def test_lwf_on_replay_rows_and_wer_per_validation_set(data):
    """Replay marks general-domain rows for LwF; validation reports each named set beside the union."""
    import lightning as L

    _, tmp = data
    lines = fixture_lines()
    domain = write_manifest(tmp / "domain.jsonl", lines[:4])
    general = write_manifest(tmp / "general.jsonl", lines[4:])
    module = _module(lwf_weight=0.5)
    val = {"val_manifest": str(domain), "val_manifests": {"general": str(general)}}
    replay = {"replay_manifest": str(general), "replay_ratio": 1.0}
    _, metrics, dm = _fit(module, (domain, tmp), **val, **replay)
    assert metrics["train/lwf"] > 0
    module.hparams.val_max_tokens = 8
    checker = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = checker.validate(module, dm, verbose=False)[0]
    assert {"val/wer", "val/wer_general"} <= set(metrics), metrics
    assert 0 <= metrics["val/wer_general"] and 0 <= metrics["val/wer"]


def test_interpolate_toward_mixes_weights_and_refuses_a_foreign_start():
    from asr_distill.student.regularise import interpolate_toward

    start, trained = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w0, w1 = start.weight.detach().clone(), trained.weight.detach().clone()
    assert interpolate_toward(trained, start, 0.25) == 2  # weight and bias
    assert torch.allclose(trained.weight, w0 + 0.25 * (w1 - w0))
    assert interpolate_toward(trained, start, 0.0) == 2 and torch.equal(trained.weight, w0)
    assert interpolate_toward(trained, start, 1.0) == 0  # already the start: nothing moves
    with pytest.raises(ValueError, match="wise_alpha"):
        interpolate_toward(trained, start, 1.5)
    with pytest.raises(ValueError, match="shape"):
        interpolate_toward(torch.nn.Linear(4, 2), start, 0.5)


@pytest.mark.slow
def test_wise_export_keeps_that_fraction_of_the_change(data, tmp_path):
    """WiSE-FT at export: alpha 0 is the starting model, 0.5 halfway, and the export records it."""
    from asr_distill.student.export import export_whisper_pt, load_student_checkpoint

    module = _module()
    start = _state(module)
    trainer, _, _ = _fit(module, data)
    ckpt = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(ckpt)
    trained = _state(load_student_checkpoint(ckpt))
    moved = [k for k in start if not torch.equal(start[k], trained[k])]
    assert moved and all(k.startswith("decoder.") for k in moved)
    back = load_student_checkpoint(ckpt, wise_alpha=0.0)
    assert all(torch.equal(v, start[k]) for k, v in back.model.state_dict().items())
    half = load_student_checkpoint(ckpt, wise_alpha=0.5)
    state = half.model.state_dict()
    for k in moved:
        assert torch.allclose(state[k], (start[k] + trained[k]) / 2, atol=1e-6), k
    pt = export_whisper_pt(half.model, tmp_path / "half.pt", half.describe())
    assert torch.load(pt, weights_only=True)["asr_distill"]["wise_alpha"] == 0.5


@pytest.mark.slow
def test_timestamped_training_learns_the_segment_and_describes_its_mode(data, an4_fixture, tmp_path):
    """``timestamps``: targets are ``<|0.00|> text <|end|>`` segments, and real steps lower their loss.

    The exported student names the mode, so evaluation decodes it in timestamp mode.
    """
    import torch.nn.functional as F

    from asr_distill.student.data import IGNORE
    from asr_distill.student.export import export_whisper_pt, student_teacher

    module = _module(timestamps=True, min_window_s=10.0, window_step_s=5.0)
    module.hparams.lr = 1e-4  # fine-tuning a pretrained decoder: 1e-3 overshoots in 4 steps
    tok = module.tokenizer
    assert module.prefix == list(tok.sot_sequence)
    _, _, dm = _fit(module, data, steps=0)
    batch = next(iter(dm.train_dataloader()))
    row = batch["tokens"][0].tolist()
    assert row[len(module.prefix)] == tok.timestamp_begin
    assert max(batch["targets"][0].tolist()) > tok.timestamp_begin  # the closing timestamp is learned

    def ce() -> float:
        with torch.no_grad():
            logits = module.model.decoder(
                batch["tokens"], module._encode(module.model, module._encoder_input(batch))
            )
            return F.cross_entropy(logits.transpose(1, 2), batch["targets"], ignore_index=IGNORE).item()

    before = ce()
    _fit(module, data, steps=4)
    assert ce() < before
    out = export_whisper_pt(module.model, tmp_path / "student.pt", module.describe())
    _, options = student_teacher(out)
    assert options.timestamps is True and options.window_for(3.0) == 10.0


@pytest.mark.slow
def test_validation_judges_the_wise_mix_and_checkpoints_keep_the_trained_weights(data, tmp_path):
    """``val_wise_alpha``: validation scores the mix an export would write; training's weights survive.

    At 0 the mix is the starting model, so the fitted module validates exactly as an untrained
    one does; the checkpoint saved on that validation holds the trained weights, not the mix.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from asr_distill.student.data import StudentDataModule

    manifest, tmp = data
    options = {"val_manifest": str(manifest), "batch_size": 4, "spec_augment": False, "augment_copies": 0}

    def validate(module) -> dict[str, float]:
        module.hparams.val_max_tokens = 8
        dm = StudentDataModule(str(manifest), cache_dir=str(tmp / "cache"), **options)
        checker = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        return checker.validate(module, dm, verbose=False)[0]

    untrained = validate(_module())
    with pytest.raises(ValueError, match="val_wise_alpha"):
        _module(val_wise_alpha=1.5)
    module = _module(val_wise_alpha=0.0)
    module.hparams.val_max_tokens = 8
    start = _state(module)
    L.seed_everything(0)
    dm = StudentDataModule(str(manifest), cache_dir=str(tmp / "cache"), **options)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/loss", save_top_k=1)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[saver],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, dm)
    judged = float(trainer.callback_metrics["val/loss"])
    assert judged == pytest.approx(untrained["val/loss"], rel=1e-5)  # the mix at 0 is the start
    trained = _state(module)
    moved = [k for k in start if not torch.equal(start[k], trained[k])]
    assert moved, "two steps changed nothing"
    saved = torch.load(saver.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
    for k in moved:
        assert torch.equal(saved[f"model.{k}"], trained[k]), k
    assert validate(module)["val/loss"] == pytest.approx(judged, rel=1e-5)  # still the mix, weights intact
    module._wise_start = None  # judged as trained: the two steps show
    assert validate(module)["val/loss"] != pytest.approx(judged, rel=1e-3)
