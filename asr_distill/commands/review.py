"""``asr-distill review export|import``: the lightweight human clean-up of doubtful labels.

export: the head of the review queue of a kept.jsonl (labels with the most expected errors
fixed per second of listening first; K of them, a score band, or a listening budget) as
OUT/review.tsv and OUT/review.html: doubtful words highlighted, a click or a key plays them,
and the page is worked through with the keyboard alone (Enter accept and next, e edit, j/k
next/previous, s save). import: apply review_edits.json (or the edited TSV) with an audit trail.
"""

from __future__ import annotations

from pathlib import Path

from . import add_force, description, subcommand

UNITS = ("word", "utterance")  # quality.review_queue.UNITS, spelled out so --help imports nothing heavy
PAD = "0.05:0.3"  # quality.review_queue.PAD, likewise

FORCE_HELP = "write into an existing --out folder that holds files this step did not write"
KIND = "review_dir"


SUMMARY = "export doubtful labels to a review page; import the reviewer's edits"


def add_parser(sub) -> None:
    """Add ``review export`` and ``review import`` to the CLI's subcommands."""
    p = sub.add_parser("review", help=SUMMARY, description=description(__doc__))
    rsub = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    e = subcommand(
        rsub, "export", run_export, "write review.tsv and review.html for the least-confident labels"
    )
    e.add_argument("kept", help="kept.jsonl written by `asr-distill filter`")
    e.add_argument("--out", required=True, help="folder for review.tsv and review.html")
    # One of these three; ReviewOptions says so when more are given.
    e.add_argument(
        "--k", type=int, help="the first K labels of the review queue (default: 10%% of the labels)"
    )
    e.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"), help="labels with LO <= score < HI")
    e.add_argument("--minutes", type=float, help="as many labels as fit in this many minutes of listening")
    e.add_argument(
        "--unit",
        choices=UNITS,
        default="word",
        help="word: highlight and play the doubtful words, ranked by expected errors fixed per second "
        "heard (needs filter --second; labels without word confidences come last); "
        "utterance: whole clips, least confident first",
    )
    e.add_argument(
        "--pad",
        help="seconds played around each doubtful run: SECONDS either side, or BEFORE:AFTER "
        f"(default {PAD}: Whisper's word spans start early and end early; widen it where "
        "word timings are worse)",
    )
    e.add_argument(
        "--calibrate-on",
        metavar="LABELS",
        help="transcribed clips of the same pool, labeled and filtered alike (a filter's --out folder "
        "or its kept.jsonl): the word confidences that flag and rank are refitted on them "
        "(word_calibration.json is written beside the page; give that file to reuse the fit)",
    )
    add_force(e, FORCE_HELP)
    i = subcommand(
        rsub, "import", run_import, "apply a reviewer's edits (review_edits.json or the edited review.tsv)"
    )
    i.add_argument("kept", help="kept.jsonl that was exported")
    i.add_argument("edits", help="review_edits.json saved by the page, or the edited review.tsv")
    i.add_argument(
        "--out", required=True, help="folder for the reviewed kept.jsonl, dropped.jsonl, review_audit.jsonl"
    )
    i.add_argument("--dropped", help="the filter's dropped.jsonl, carried over (default: beside KEPT)")
    i.add_argument("--reviewer", help="who reviewed (default: the name saved by the page)")
    add_force(i, FORCE_HELP)


def _kept(args) -> Path:
    """KEPT, checked before the output folder is made."""
    kept = Path(args.kept)
    if not kept.is_file():
        raise SystemExit(f"error: {kept} does not exist (give the kept.jsonl `asr-distill filter` wrote)")
    return kept


def _force(args) -> bool:
    """``--force`` replaces files in a folder, never a file standing where the folder should be."""
    out = Path(args.out)
    return args.force and (out.is_dir() or not out.exists())


def run_export(args) -> int:
    """Write the review page for the least-confident labels and say how much listening it asks."""
    from ..outputs import guard_output
    from ..quality.stage import ReviewOptions, run_review_export

    options = ReviewOptions(
        k=args.k,
        band=tuple(args.band) if args.band else None,
        minutes=args.minutes,
        unit=args.unit,
        pad=args.pad,
        calibrate_on=args.calibrate_on,
    )
    kept = _kept(args)
    if args.calibrate_on and not Path(args.calibrate_on).exists():
        raise SystemExit(f"error: --calibrate-on {args.calibrate_on} does not exist")
    with guard_output(args.out, inputs=[kept], kind=KIND, force=_force(args)):
        r = run_review_export(kept, Path(args.out), options)
    print(
        f"{r.items} labels to review ({r.selection}): {r.doubtful_words} doubtful words, "
        f"{r.listen_min:.1f} min to listen to of {r.audio_min:.1f} min of audio, "
        f"{r.load_min_per_h:.1f} min per hour labeled -> {r.html} (open in a browser), {r.tsv}"
    )
    return 0


def run_import(args) -> int:
    """Apply the reviewer's edits; a malformed edits file is refused before OUT is made."""
    from ..outputs import guard_output
    from ..quality.edits import printable, quoted_ids, read_edits
    from ..quality.stage import ReviewOptions, run_review_import

    kept = _kept(args)
    if not Path(args.edits).is_file():
        raise SystemExit(f"error: {args.edits} does not exist (give the review_edits.json the page saved)")
    read_edits(args.edits)  # a malformed edits file is refused before the output folder is made
    out = Path(args.out)
    dropped = Path(args.dropped) if args.dropped else kept.with_name("dropped.jsonl")
    inputs = [kept, Path(args.edits), *([dropped] if args.dropped or dropped.exists() else [])]
    with guard_output(out, inputs=inputs, kind=KIND, force=_force(args)):
        r = run_review_import(
            kept,
            Path(args.edits),
            out,
            ReviewOptions(reviewer=args.reviewer),
            dropped=Path(args.dropped) if args.dropped else None,
        )
    print(
        f"reviewed {r.edits} labels by {printable(r.reviewer)}: accepted {r.accepted} ({r.edited} edited), "
        f"rejected {r.rejected}; kept {len(r.kept)} -> {out}/kept.jsonl, audit in {out}/review_audit.jsonl"
    )
    if r.unknown_ids:
        print(f"warning: {len(r.unknown_ids)} edited ids are not in {args.kept}: {quoted_ids(r.unknown_ids)}")
    return 0
