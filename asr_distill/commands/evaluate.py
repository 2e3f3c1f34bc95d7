"""``asr-distill evaluate MODEL... --set in_domain=M --set NAME=M2``: every model on every test set.

Transcribe each named test set (``in_domain`` plus any out-of-domain manifests; ``--manifest M``
is ``--set in_domain=M``) with each MODEL, decoded by the same loop-guarded search, and score it
under one named normaliser: WER and CER with substitutions/deletions/insertions and the insertion
rate, a bootstrap confidence interval, WER per speaker and per duration bucket, RTFx and parameter
count. A paired bootstrap compares every model with the first one on each set; a student
significantly worse than the model it started from (``--baseline``, or read from its checkpoint)
on any set is flagged as a REGRESSION. An out-of-domain set whose manifest is absent is skipped
with the reason printed. Writes OUT/<name>/ (in-domain) and OUT/<name>@<set>/ per model with
hyps.jsonl, alignment.jsonl, alignment.txt and result.json, plus OUT/summary.json and OUT/table.md.
"""

from __future__ import annotations

from pathlib import Path

from ..teacher.options import AUTO_BATCH, parse_batch_size
from . import add_force, subcommand

SUMMARY = "measure models on named test sets (WER with CI, S/D/I, insertions, CER, RTFx, params, regressions)"


# Options given once per pair, NAME=VALUE: the test sets, and each student's starting point.
_PAIRS = (
    (
        "--set",
        "sets",
        "NAME=MANIFEST",
        "a named test set whose text is the reference: in_domain=test.jsonl, an4=an4/test.jsonl; "
        "repeat for more (out-of-domain sets that are absent are skipped)",
    ),
    (
        "--baseline",
        "baselines",
        "MODEL=STARTED_FROM",
        "rows: a student and the model it started from (student=tiny.en); "
        "default: read from each student checkpoint's description",
    ),
)


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
    for flag, dest, metavar, text in _PAIRS:
        p.add_argument(flag, dest=dest, action="append", default=None, metavar=metavar, help=text)
    p.add_argument("--manifest", default=None, help="the in-domain test manifest (--set in_domain=MANIFEST)")
    p.add_argument("--out", default=None, help="output folder (default: eval/ beside the in-domain manifest)")
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
    p.add_argument(
        "--batch-size",
        type=parse_batch_size,
        default=AUTO_BATCH,
        help="clips per batch, or auto: 8 on a CPU, as many as free memory holds on a GPU (default: auto)",
    )
    p.add_argument("--backend", choices=["whisper", "faster-whisper"], default="whisper")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: GPU if any)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--redo", action="store_true", help="decode again even if OUT holds hypotheses")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "write into an existing --out folder that holds files evaluate did not write")


def _sets(args) -> tuple[dict[str, Path], list[Path]]:
    """The named sets from ``--set`` and ``--manifest`` (in_domain first) and the manifests present.

    A bad spec, a repeated name or a missing in-domain manifest ends the command; an absent
    out-of-domain set is skipped with its reason printed.
    """
    from ..evaluate import IN_DOMAIN, available, named_sets, parse_set_spec

    specs = [f"{IN_DOMAIN}={args.manifest}"] if args.manifest else []
    try:
        pairs = [parse_set_spec(s) for s in [*specs, *(args.sets or [])]]
        names = [n for n, _ in pairs]
        if not pairs or len(set(names)) != len(names):
            raise ValueError(f"name each test set once with --set NAME=MANIFEST or --manifest, got {names}")
        sets = named_sets(dict(pairs))
        present, skipped = available(sets)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    for name, why in skipped.items():
        print(f"skipping test set {name}: {why}")
    return sets, list(present.values())


def _baselines(args) -> dict[str, str] | None:
    if args.baselines is None:
        return None
    pairs = [b.partition("=") for b in args.baselines]
    if any(not (m and sep and base) for m, sep, base in pairs):
        raise SystemExit(f"error: --baseline takes MODEL=STARTED_FROM, got {args.baselines}")
    return {m: base for m, _, base in pairs}


def run(args) -> int:
    """Refuse unsafe model files and outputs before decoding, then evaluate and print the tables."""
    import torch

    from ..evaluate import Decoding, Scoring, check_model_files, evaluate, format_suite, parse_model_spec
    from ..metrics import DEFAULT_NORMALISER
    from ..outputs import guard_output

    if args.threads:
        torch.set_num_threads(args.threads)
    sets, manifests = _sets(args)
    out = Path(args.out) if args.out else manifests[0].parent / "eval"
    check_model_files(args.models)  # a crafted checkpoint is refused before anything is written
    models = [m for _, m in map(parse_model_spec, args.models) if Path(m).exists()]
    try:
        scoring = Scoring(
            args.normaliser or DEFAULT_NORMALISER, tuple(args.also), args.resamples, seed=args.seed
        )
        decoding = Decoding(args.batch_size, args.backend, args.device, progress=not args.no_progress)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    force = args.force and (out.is_dir() or not out.exists())
    with guard_output(out, inputs=[*manifests, *models], kind="evaluate_dir", force=force):
        suite = evaluate(
            args.models, sets, out, scoring=scoring, decoding=decoding, baselines=_baselines(args)
        )
    print(format_suite(suite))
    print(f"normaliser: {scoring.normaliser}; per-utterance alignments and summary.json in {out}")
    return 0
