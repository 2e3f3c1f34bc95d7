"""Checkpoints load without running code: real Lightning checkpoints pass, crafted pickles do not."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from bad_inputs import crafted_pickle

from asr_distill.safe_load import CheckpointError, UnsafeCheckpointError, checkpoint_globals, load_checkpoint

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")


class Tiny(L.LightningModule):
    """Hyper-parameters of the kinds StudentModule and a user's config carry (a path among them)."""

    def __init__(
        self,
        teacher: str = "tiny.en",
        encoder_layers: list[int] | None = None,
        lr: float = 1e-3,
        frozen_encoder: bool = True,
        cache_dir: Path | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)}


def _fit(root: Path, steps: int, model: Tiny, ckpt_path: Path | None = None, **trainer_options):
    """``steps`` optimiser steps of ``model`` on random data; the trainer, for its state."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 4)), batch_size=2)
    trainer = L.Trainer(
        max_steps=steps,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **trainer_options,
    )
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    trainer = _fit(root, 2, Tiny(encoder_layers=[0, 1], cache_dir=root / "cache"))
    path = root / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_lightning_checkpoint_loads_with_its_hyper_parameters(lightning_ckpt):
    ckpt = load_checkpoint(lightning_ckpt)
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["encoder_layers"] == [0, 1]
    assert isinstance(ckpt["hyper_parameters"]["cache_dir"], Path)  # allow-listed, not refused
    assert set(ckpt["state_dict"]) == {"layer.weight", "layer.bias"}
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]


def test_the_allow_list_is_scoped_to_the_load(lightning_ckpt):
    from torch.serialization import get_safe_globals

    with checkpoint_globals():
        assert Path(".").__class__ in get_safe_globals()
    assert Path(".").__class__ not in get_safe_globals()
    with pytest.raises(pickle.UnpicklingError):  # torch's defaults alone refuse the path
        torch.load(lightning_ckpt, weights_only=True)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "payload_ran"
    path = crafted_pickle(tmp_path / "evil.ckpt", marker, legacy=legacy)
    words = r"evil\.ckpt holds Python objects .*posix\.mkdir"
    with pytest.raises(UnsafeCheckpointError, match=words) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one line, no chained dump
    assert not marker.exists()


@pytest.mark.parametrize(
    "data", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"], ids=["empty", "text", "broken_zip"]
)
def test_unreadable_file_is_a_checkpoint_error_not_unsafe(tmp_path, data):
    path = tmp_path / "x.ckpt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"x\.ckpt is not a readable torch checkpoint") as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.ckpt")


def test_plain_weights_and_map_location(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"dims": {"n_mels": 80}, "model_state_dict": {"w": torch.ones(2)}}, path)
    loaded = load_checkpoint(path, map_location="cpu")
    assert loaded["dims"] == {"n_mels": 80} and loaded["model_state_dict"]["w"].device.type == "cpu"


def test_a_resume_reads_the_checkpoint_with_the_safe_loader(tmp_path, lightning_ckpt):
    """The trainer's CheckpointIO (what ``--ckpt_path last`` reads) refuses a crafted last.ckpt."""
    from asr_distill.student.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    state = io.load_checkpoint(lightning_ckpt, map_location=lambda storage, loc: storage)
    assert state["hyper_parameters"]["encoder_layers"] == [0, 1] and state["optimizer_states"]
    marker = tmp_path / "payload_ran"
    with pytest.raises(UnsafeCheckpointError):
        io.load_checkpoint(crafted_pickle(tmp_path / "last.ckpt", marker, legacy=False))
    assert not marker.exists()
    # a real resume through it
    trainer = _fit(
        tmp_path, 3, Tiny(encoder_layers=[0, 1]), lightning_ckpt, enable_checkpointing=False, plugins=[io]
    )
    assert trainer.global_step == 3
