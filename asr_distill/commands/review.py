"""``asr-distill review export|import``: the lightweight human clean-up of doubtful labels."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "review",
        help="export doubtful labels to a review page; import the reviewer's edits",
        description="export: the K least-confident labels (or a score band) of a kept.jsonl as "
        "OUT/review.tsv and OUT/review.html (audio player, editable text, accept/reject, a "
        "save button). import: apply review_edits.json (or the edited TSV) with an audit trail.",
    )
    rsub = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    e = rsub.add_parser("export", help="write review.tsv and review.html for the least-confident labels")
    e.add_argument("kept", help="kept.jsonl written by `asr-distill filter`")
    e.add_argument("--out", required=True, help="folder for review.tsv and review.html")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--k", type=int, help="the K least-confident labels (default: 10%% of them)")
    g.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"), help="labels with LO <= score < HI")
    e.set_defaults(func=run_export)
    i = rsub.add_parser(
        "import", help="apply a reviewer's edits (review_edits.json or the edited review.tsv)"
    )
    i.add_argument("kept", help="kept.jsonl that was exported")
    i.add_argument("edits", help="review_edits.json saved by the page, or the edited review.tsv")
    i.add_argument(
        "--out", required=True, help="folder for the reviewed kept.jsonl, dropped.jsonl, review_audit.jsonl"
    )
    i.add_argument("--dropped", help="the filter's dropped.jsonl, carried over (default: beside KEPT)")
    i.add_argument("--reviewer", help="who reviewed (default: the name saved by the page)")
    i.set_defaults(func=run_import)


def run_export(args) -> int:
    import math

    from ..filter import read_pseudo_labels
    from ..jsonl import atomic_write_text
    from ..review import export_review

    labels = read_pseudo_labels(args.kept)
    k = args.k if args.k is not None or args.band else math.ceil(0.1 * len(labels))
    r = export_review(labels, args.out, k=k, band=tuple(args.band) if args.band else None)
    atomic_write_text(
        Path(args.out) / "review_report.json",
        json.dumps({**r.__dict__, "kept": str(args.kept)}, indent=1) + "\n",
    )
    print(
        f"{r.items} labels to review ({r.selection}): {r.audio_min:.1f} min of audio, "
        f"{r.load_min_per_h:.1f} min per hour labeled -> {r.html} (open in a browser), {r.tsv}"
    )
    return 0


def run_import(args) -> int:
    from ..filter import read_pseudo_labels
    from ..jsonl import atomic_write_jsonl
    from ..review import apply_review, read_edits

    kept = read_pseudo_labels(args.kept)
    dropped_path = Path(args.dropped) if args.dropped else Path(args.kept).with_name("dropped.jsonl")
    dropped = read_pseudo_labels(dropped_path) if dropped_path.is_file() else []
    edits, reviewer, time = read_edits(args.edits)
    reviewer = args.reviewer or reviewer
    if not reviewer:
        raise SystemExit("error: say who reviewed: --reviewer NAME (the TSV does not record it)")
    r = apply_review(kept, dropped, edits, reviewer=reviewer, time=time)
    out = Path(args.out)
    atomic_write_jsonl(out / "kept.jsonl", (p.to_dict() for p in r.kept))
    atomic_write_jsonl(out / "dropped.jsonl", (p.to_dict() for p in r.dropped))
    atomic_write_jsonl(out / "review_audit.jsonl", r.audit)
    print(
        f"reviewed {len(edits)} labels by {reviewer}: accepted {r.accepted} ({r.edited} edited), rejected "
        f"{r.rejected}; kept {len(r.kept)} -> {out}/kept.jsonl, audit in {out}/review_audit.jsonl"
    )
    if r.unknown_ids:
        print(
            f"warning: {len(r.unknown_ids)} edited ids are not in {args.kept}: {', '.join(r.unknown_ids[:5])}"
        )
    return 0
