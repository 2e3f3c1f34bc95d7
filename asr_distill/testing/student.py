"""A Lightning trainer for a few real student steps, for tests and step-time benchmarks.

No logger, checkpoints, progress bar or validation: what is measured or checked is the
training steps themselves (``trainer.callback_metrics`` holds the last step's loss terms).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def few_steps_trainer(root: str | Path, steps: int, callbacks: Sequence = ()):
    """A CPU-friendly ``lightning.Trainer`` that stops after ``steps`` optimizer steps."""
    import lightning as L

    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        default_root_dir=str(root),
    )
