"""``asr-distill adapt-window``: a teacher adapted to a short encoder window by self-distillation.

Label MANIFEST (unlabeled audio) with the teacher at 30 s, greedily (into TARGETS, resumable),
then train a copy whose decoder is frozen to write the same in the --window window the
labeler gives a clip at --min-window WINDOW: LoRA adapters on the encoder (--lora-rank), or its
top blocks' own weights (--lora-rank 0 --train-encoder-layers N). Writes OUT, an openai-whisper
checkpoint carrying its provenance (parent sha256, the adaptation data and steps); label with
it as `asr-distill label --model OUT --min-window WINDOW`. Measure its agreement with the 30 s
teacher on audio it did not see before trusting it (benchmarks/short_window.py).
"""

from __future__ import annotations

from pathlib import Path

from ..teacher.options import DEFAULT_BATCH_SIZE, DEFAULT_TEACHER, PRECISIONS, SHORT_WINDOWS_S, WINDOW_S
from . import add_force, add_out, subcommand

SUMMARY = "adapt the teacher to a short encoder window on unlabeled audio (self-distillation)"


def add_parser(sub) -> None:
    """Add ``adapt-window`` to the CLI's subcommands."""
    p = subcommand(sub, "adapt-window", run, SUMMARY, __doc__)
    p.add_argument("manifest", help="NeMo JSON Lines manifest of unlabeled audio to adapt on")
    add_out(p, "the derived teacher's .pt")
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help=f"the parent (default: {DEFAULT_TEACHER})")
    p.add_argument(
        "--targets",
        default=None,
        help="the teacher's 30 s labels of MANIFEST (resumed if present; default: OUT with .targets.jsonl)",
    )
    p.add_argument(
        "--window",
        type=float,
        default=10.0,
        choices=[w for w in SHORT_WINDOWS_S if w < WINDOW_S],
        help="the labeler's --min-window the teacher is adapted for (default: 10)",
    )
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--lora-rank", type=int, default=8, help="0: train the blocks' own weights")
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument(
        "--train-encoder-layers", type=int, default=0, help="top encoder blocks that change (0: all)"
    )
    p.add_argument(
        "--kl-weight",
        type=float,
        default=0.0,
        help="add KL to the 30 s decoder's distributions (one more 30 s encoder pass per step)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="encoder dtype for labeling the targets"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "replace an OUT (or targets file) this toolkit did not write")


def run(args) -> int:
    """Label the targets, adapt, write OUT under its lock; print the provenance's figures."""
    import torch

    from ..outputs import guard_output
    from ..teacher import load_teacher
    from ..teacher.short_window import AdaptConfig, adapt, save_derived, targets

    config = AdaptConfig(  # a bad setting is refused before any model loads
        window_s=args.window,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        train_encoder_layers=args.train_encoder_layers,
        kl_weight=args.kl_weight,
        seed=args.seed,
    )
    manifest, out = Path(args.manifest), Path(args.out)
    if not manifest.is_file():
        raise SystemExit(f"error: manifest {manifest} does not exist")
    labels = Path(args.targets) if args.targets else out.with_name(f"{out.stem}.targets.jsonl")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with guard_output(out, inputs=[manifest, labels], kind="export", force=args.force):
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        teacher = load_teacher(args.teacher, device=device)
        progress = not args.no_progress
        data = targets(
            teacher,
            manifest,
            labels,
            batch_size=args.batch_size,
            precision=args.precision,
            progress=progress,
            force=args.force,
        )
        print(f"targets: {data.data.clips} clips, {data.data.audio_s / 60:.1f} min of audio -> {labels}")
        adapted = adapt(teacher, data, config, progress=progress)
        save_derived(adapted, out)
    d = adapted.derivation
    print(
        f"adapted {d.parent} to {config.window_s:g} s windows ({d.method}, {config.steps} steps, "
        f"{adapted.seconds_per_step:.2f} s/step): loss {d.loss_start:.4f} -> {d.loss_end:.4f} -> {out}"
    )
    return 0
