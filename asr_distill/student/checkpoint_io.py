"""Checkpoints written whole or not at all, read without running code, and a true ``last.ckpt``.

Lightning writes a checkpoint straight to its final name, so a kill during the write
leaves a truncated ``last.ckpt`` that the resume then fails to load. Here the bytes go
to a temporary file beside it, are fsynced, and renamed over the final name. A resume
reads ``last.ckpt`` through :func:`asr_distill.safe_load.load_checkpoint` (tensors and
plain data only), not torch's pickle, so a crafted file in the run folder runs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-to-temporary-then-rename and the safe loader for local paths."""

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None):
        """Read a local checkpoint with the allow-listed loader; it refuses what would run code."""
        if "://" in str(path):  # remote filesystems: Lightning's loader, weights only
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        from ..safe_load import load_checkpoint

        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
        if "://" in str(path):  # remote filesystems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class LatestCheckpoint(Callback):
    """Write ``last.ckpt`` after every epoch, so a resume starts from the latest epoch.

    Lightning's ``ModelCheckpoint(save_last=True)`` refreshes ``last.ckpt`` only when a
    top-k checkpoint was saved in the same step: with ``monitor: val/wer`` a run killed
    after several epochs without a new best resumed from the best epoch and trained those
    epochs again. This writes it into the ModelCheckpoint's folder (where ``--ckpt_path
    last`` looks) through the trainer, so the checkpoint IO's atomic write applies.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Save ``last.ckpt`` through the trainer, after validation and early stopping.

        A checkpoint taken at validation end would resume into the epoch-end hooks without
        validation metrics.
        """
        ckpt = trainer.checkpoint_callback
        if trainer.sanity_checking or ckpt is None or not ckpt.dirpath or not ckpt.save_last:
            return
        path = os.path.join(ckpt.dirpath, ckpt.CHECKPOINT_NAME_LAST + ckpt.FILE_EXTENSION)
        ckpt.last_model_path = path  # ModelCheckpoint then overwrites it, not a "last-v1.ckpt"
        trainer.save_checkpoint(path)  # a full checkpoint (Lightning's default): resume needs the optimiser
