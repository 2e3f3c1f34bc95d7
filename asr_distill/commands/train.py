"""``asr-distill train``: train a student with LightningCLI (YAML config + command-line overrides).

Every argument after ``train`` goes to LightningCLI, so ``--config`` files, dotted
overrides (``--trainer.max_epochs 5``, ``--model.kl_weight 0``) and ``--print_config``
work as in any Lightning project. The run's full config is saved as ``config.yaml`` in
the run folder beside ``checkpoints/``. A rerun of the same command resumes from
``checkpoints/last.ckpt`` (``--ckpt_path last`` is the default; ``--ckpt_path null``
starts over). Precision defaults to fp32 on CPU and bf16-mixed on GPU. The run folder is
checked before anything is written into it: one holding files a training did not write is
refused unless ``--force`` (taken off the arguments before LightningCLI sees them).
"""

from __future__ import annotations

import argparse

SUBCOMMANDS = ("fit", "validate", "test")


SUMMARY = "train a compact Whisper student on pseudo-labels (LightningCLI: --config run.yaml ...)"
DESCRIPTION = (
    "Everything after 'train' is LightningCLI's: e.g. asr-distill train --config "
    "configs/student_an4.yaml --trainer.max_epochs 5. 'asr-distill train fit --help' lists every option."
)


def add_parser(sub) -> None:
    """Add ``train``, whose arguments all go to LightningCLI, to the CLI's subcommands."""
    # prefix_chars="+" so that --config and --help reach LightningCLI untouched
    p = sub.add_parser("train", help=SUMMARY, description=DESCRIPTION, prefix_chars="+", add_help=False)
    p.add_argument("cli_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_train)


def lightning_args(args: list[str]) -> list[str]:
    """``fit`` unless a subcommand is named; ``--ckpt_path last`` unless a path is given."""
    args = list(args)
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]
    wants_help = any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in args)
    if args[0] == "fit" and not wants_help and not any(a.split("=")[0] == "--ckpt_path" for a in args):
        args += ["--ckpt_path", "last"]
    return args


def _run_config_callback(force: bool = False):
    """LightningCLI's SaveConfigCallback, plus a copy of the config beside ``checkpoints/``.

    The logger's own copy goes to its per-attempt ``logs/version_N``, which a resumed run
    does not share.

    Args:
        force: train into a folder that holds files a training did not write.
    """
    from pathlib import Path

    from lightning.pytorch.cli import SaveConfigCallback

    from ..jsonl import acquire_lock, atomic_write_text, release_lock
    from ..outputs import check_output, claim_output

    def run_root(trainer) -> Path:
        ckpt = trainer.checkpoint_callback
        has_dir = ckpt is not None and ckpt.dirpath
        return Path(ckpt.dirpath).parent if has_dir else Path(trainer.default_root_dir)

    class RunConfigCallback(SaveConfigCallback):
        """Also holds the run folder's lock from set-up to exit.

        Two trainings in one folder would overwrite each other's checkpoints, so the second
        is refused before it writes.
        """

        _lock = None

        def setup(self, trainer, pl_module, stage: str) -> None:
            if trainer.is_global_zero and self._lock is None:
                root = run_root(trainer)
                check_output(root, kind="train_dir", force=force)  # before the lock file is made
                self._lock = acquire_lock(
                    root / ".train.lock",
                    root,
                    "wait for that training, or give this one another default_root_dir",
                )
                try:
                    check_output(root, kind="train_dir", force=force)
                    claim_output(root, "train_dir")
                except BaseException:
                    self.teardown(trainer, pl_module, stage)
                    raise
            super().setup(trainer, pl_module, stage)

        def teardown(self, trainer, pl_module, stage: str) -> None:
            if self._lock is not None:
                release_lock(self._lock)
                self._lock = None

        def save_config(self, trainer, pl_module, stage: str) -> None:
            root = run_root(trainer)
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(root / self.config_filename, self.parser.dump(self.config, skip_none=False))

    return RunConfigCallback


def run_cli(args: list[str], force: bool = False):
    """Build and run the LightningCLI for the student (also used by benchmarks and tests).

    ``force``: train into a run folder that holds files a training did not write.
    """
    import warnings

    import torch

    from ..student.data import StudentDataModule
    from ..student.module import StudentModule

    gpu = torch.cuda.is_available()
    # we pass args on purpose (sys.argv also holds 'asr-distill train ...'): not a mistake
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return _student_cli()(
        StudentModule,
        StudentDataModule,
        args=lightning_args(args),
        save_config_callback=_run_config_callback(force),
        save_config_kwargs={"overwrite": True},  # a resumed run rewrites the same config
        trainer_defaults={"precision": "bf16-mixed" if gpu else "32-true", "use_distributed_sampler": False},
        seed_everything_default=0,
        parser_kwargs={"prog": "asr-distill train"},
    )


def _student_cli():
    """LightningCLI whose trainer saves checkpoints atomically, unless the config names its own.

    The CheckpointIO is added at construction, not as a config default, so the saved
    config.yaml stays one a user can run again.
    """
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import CheckpointIO

    from ..student.checkpoint_io import AtomicCheckpointIO

    class StudentCLI(LightningCLI):
        def instantiate_trainer(self, **kwargs):
            configured = self._get(self.config_init, "trainer", default={}).get("plugins")
            plugins = (
                []
                if configured is None
                else list(configured)
                if isinstance(configured, list)
                else [configured]
            )
            if not any(isinstance(x, CheckpointIO) for x in plugins):
                plugins.append(AtomicCheckpointIO())
            return super().instantiate_trainer(**kwargs, plugins=plugins)

    return StudentCLI


HELP = """usage: asr-distill train [fit|validate|test] --config STUDENT.yaml [--force] [--KEY VALUE ...]

Train a compact Whisper student on pseudo-labels with LightningCLI. Everything after 'train'
is LightningCLI's: a YAML config and dotted overrides, e.g.

  asr-distill train --config configs/student_an4.yaml --trainer.max_epochs 5
  asr-distill train --config run.yaml --model.kl_weight 0 --data.batch_size 16
  asr-distill train --config run.yaml --print_config      # the full config, resolved

A rerun of the same command resumes from checkpoints/last.ckpt (--ckpt_path null starts over).
--force trains into a folder that holds files a training did not write.

Every option of the model, data and trainer (this loads torch and Lightning):
  asr-distill train fit --help
"""


def _cmd_train(args) -> int:
    if args.cli_args in (["-h"], ["--help"]):  # a light answer; LightningCLI's own via 'train fit --help'
        print(HELP, end="")
        return 0
    cli_args = [a for a in args.cli_args if a != "--force"]
    cli = run_cli(cli_args, force=len(cli_args) < len(args.cli_args))
    trainer = getattr(cli, "trainer", None)
    if trainer is not None and trainer.checkpoint_callback is not None:
        cb = trainer.checkpoint_callback
        print(
            f"best checkpoint {cb.best_model_path or '-'} (val/wer {cb.best_model_score}); "
            f"last {cb.dirpath}/last.ckpt; config {trainer.log_dir}/config.yaml"
        )
    return 0
