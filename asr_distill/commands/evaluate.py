"""``asr-distill evaluate MODEL... --manifest M``: WER, CI, breakdowns, speed and size, one table.

Transcribe MANIFEST with each MODEL and score it under one named normaliser: WER and CER with
substitutions/deletions/insertions, a bootstrap confidence interval, WER per speaker and per
duration bucket, RTFx and parameter count. Writes OUT/<name>/{hyps.jsonl, alignment.jsonl,
alignment.txt, result.json}, OUT/summary.json and OUT/table.md; a paired bootstrap compares every
model with the first one.
"""

from __future__ import annotations

from pathlib import Path

from . import add_force, subcommand

SUMMARY = "measure one or more models on a test manifest (WER with CI, S/D/I, CER, RTFx, params)"


def add_parser(sub) -> None:
    """Add ``evaluate`` to the CLI's subcommands."""
    p = subcommand(sub, "evaluate", run, SUMMARY, __doc__)
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="base, tiny.en, a .pt checkpoint (exported student), a CTranslate2 folder; "
        "NAME=MODEL names the row (teacher=base student=runs/x/student.pt)",
    )
    p.add_argument("--manifest", required=True, help="test manifest; its text is the reference")
    p.add_argument("--out", default=None, help="output folder (default: eval/ beside the manifest)")
    p.add_argument(
        "--normaliser",
        default=None,
        help="normaliser for every headline figure (default: format_insensitive)",
    )
    p.add_argument(
        "--also",
        nargs="*",
        default=["whisper_en"],
        metavar="NORMALISER",
        help="further normalisers whose WER is shown beside it (default: whisper_en)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--backend", choices=["whisper", "faster-whisper"], default="whisper")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: GPU if any)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--redo", action="store_true", help="decode again even if OUT holds hypotheses")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "write into an existing --out folder that holds files evaluate did not write")


def run(args) -> int:
    """Refuse unsafe model files and outputs before decoding, then evaluate and print the table."""
    import torch

    from ..evaluate import check_model_files, evaluate, format_comparisons, format_table, parse_model_spec
    from ..metrics import DEFAULT_NORMALISER
    from ..outputs import guard_output

    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise SystemExit(f"error: manifest {manifest} does not exist")
    out = Path(args.out) if args.out else manifest.parent / "eval"
    check_model_files(args.models)  # a crafted checkpoint is refused before anything is written
    models = [m for _, m in map(parse_model_spec, args.models) if Path(m).exists()]
    force = args.force and (out.is_dir() or not out.exists())
    with guard_output(out, inputs=[manifest, *models], kind="evaluate_dir", force=force):
        ev = evaluate(
            args.models,
            manifest,
            out,
            normaliser=args.normaliser or DEFAULT_NORMALISER,
            other_normalisers=args.also,
            batch_size=args.batch_size,
            backend=args.backend,
            device=args.device,
            resamples=args.resamples,
            seed=args.seed,
            reuse=not args.redo,
            progress=not args.no_progress,
        )
    print(format_table(ev.results))
    if ev.comparisons:
        print()
        print(format_comparisons(ev.comparisons))
    print(f"\nnormaliser: {ev.normaliser}; per-utterance alignments and summary.json in {out}")
    return 0
