"""Pseudo-labels of short utterances decoded alone vs packed into 30 s windows (``label --pack-s``).

    python benchmarks/pack_labels.py --manifest ../shared/data/speechocean762/pool.jsonl \
        --every-speaker 4 --out benchmarks/results/pack_labels.json
    python benchmarks/pack_labels.py ... --speaker-offset 1 --work .cache/bench_pack_1 \
        --out benchmarks/results/pack_labels_speakers1.json      # the same on other speakers
    python benchmarks/pack_labels.py --manifest ../shared/data/an4/train.jsonl --filter-pool an4 \
        --work .cache/bench_pack_an4 --out benchmarks/results/pack_labels_an4.json   # out of domain

Labels a pool twice with the same teacher (greedy, default settings): each utterance alone,
and with each speaker's consecutive utterances packed into windows of up to ``--pack-s``
(split back per utterance by word timings). References (the pool's transcripts) only measure:
label WER of each, the paired bootstrap over utterances (``p_not_better``: the share of
resamples in which packing was not better), the same split by age group where the manifest
has ``age``, and the recipe's reference-free filter on each label set (``--second``'s labels
give the agreement score; kept label WER at the recipe's retention budgets). Labeling speeds
come with the CPU's flags; they are comparable only when nothing else ran beside the job.
Labels go to ``--work`` (resumable: a rerun labels only what is missing).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from label_quality import POOL_KEEPS, recipe_filter  # noqa: E402  (the pools' filter, shared)

from asr_distill.evaluate.bootstrap import paired_bootstrap  # noqa: E402
from asr_distill.evaluate.scoring import score_utterances  # noqa: E402
from asr_distill.jsonl import atomic_write_text, read_jsonl  # noqa: E402

NORMALISER = "format_insensitive"
CHILD_MAX_AGE = 15  # speechocean762's children are 6-15


def subset(manifest: Path, every: int, out: Path, offset: int = 0) -> Path:
    """Every ``every``-th speaker from the ``offset``-th, with all their utterances, paths made absolute."""
    rows = list(read_jsonl(manifest))
    speakers = sorted({str(r.get("speaker")) for r in rows})[offset::every]
    keep = [
        r | {"audio_filepath": str((manifest.parent / r["audio_filepath"]).resolve())}
        for r in rows
        if str(r.get("speaker")) in speakers
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in keep))
    return out


def label(manifest: Path, out: Path, teacher: str, pack_s: float | None) -> float | None:
    """Label into ``out`` (resuming); the RTFx of this call when it labeled everything itself.

    A resumed call (``out`` or its windows already there) reports None: its speed is a part's.
    """
    from asr_distill.label import LabelRun
    from asr_distill.label_job import label_job
    from asr_distill.pack_job import windows_dir

    had = (out.exists() and out.stat().st_size > 0) or windows_dir(out).exists()
    stats = label_job(manifest, out, LabelRun(teacher, progress=True), pack_s=pack_s)
    return None if had else round(stats.rtfx, 2)


def scores(labels: Path, refs: dict[str, str], ids: list[str]) -> list:
    hyps = {d["id"]: d["text"] for d in read_jsonl(labels)}
    return score_utterances([refs[i] for i in ids], [hyps.get(i, "") for i in ids], NORMALISER, ids=ids)


def compare(alone: list, packed: list, names=("packed", "alone")) -> dict:
    p = paired_bootstrap(packed, alone, names=names, normaliser=NORMALISER)
    diff = [a.errors - b.errors for a, b in zip(packed, alone, strict=True)]
    return {
        "wer_alone": p.wer_b,
        "wer_packed": p.wer_a,
        "delta": p.delta,
        "delta_ci": [p.delta_ci.low, p.delta_ci.high],
        "p_not_better": p.p_value,
        "utterances": p.utterances,
        "utterances_better": sum(d < 0 for d in diff),
        "utterances_worse": sum(d > 0 for d in diff),
    }


def filtered(labels: Path, second: Path, pool: str) -> dict:
    """``pool``'s filter on ``labels`` (tiny.en agreement): kept WER per budget.

    ``an4``: the default filter (as ``label_quality`` runs AN4 train); another pool: its recipe's.
    """
    from label_quality import pool_figures

    from asr_distill.quality.filter import FilterConfig

    config, source = (FilterConfig(), "FilterConfig()") if pool == "an4" else recipe_filter(pool)
    f = pool_figures(labels, second, config)
    budgets = {f"keep_{k}": {x: f[f"keep_{k}"][x] for x in ("wer_kept", "retention")} for k in POOL_KEEPS}
    ratio = {k: round(v["wer_kept"] / f["wer_all"], 3) for k, v in budgets.items()}
    return {"wer_all": f["wer_all"], **budgets, "ratio_kept_to_all": ratio, "filter_config": source}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=ROOT.parent / "shared/data/speechocean762/pool.jsonl")
    ap.add_argument("--every-speaker", type=int, default=4)
    ap.add_argument("--speaker-offset", type=int, default=0, help="another subset of speakers: 1..N-1")
    ap.add_argument("--filter-pool", choices=("speechocean762", "support", "an4"), default="speechocean762")
    ap.add_argument("--teacher", default="base")
    ap.add_argument("--second", default="tiny.en")
    ap.add_argument("--pack-s", type=float, default=30.0)
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench_pack")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pack_labels.json")
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        print(f"skipped: {args.manifest} not found (the shared data sits beside the checkout)")
        return 0
    pool = subset(args.manifest, args.every_speaker, args.work / "pool.jsonl", args.speaker_offset)
    files = {k: args.work / f"{k}.jsonl" for k in ("alone", "packed", "second")}
    start = time.time()
    rtfx = {
        "alone": label(pool, files["alone"], args.teacher, None),
        "packed": label(pool, files["packed"], args.teacher, args.pack_s),
        "second": label(pool, files["second"], args.second, None),
    }
    by_id = {d["id"]: d for d in read_jsonl(files["alone"])}
    refs = {i: str(d.get("ref_text") or "") for i, d in by_id.items()}
    ids = sorted(refs)
    alone, packed = scores(files["alone"], refs, ids), scores(files["packed"], refs, ids)
    ages = _ages(pool, by_id)
    groups = {
        name: [k for k, i in enumerate(ids) if keep(ages.get(i))]
        for name, keep in (
            ("children", lambda a: a is not None and a <= CHILD_MAX_AGE),
            ("adults", lambda a: a is not None and a > CHILD_MAX_AGE),
        )
    }
    groups = {g: ks for g, ks in groups.items() if ks}
    result = {
        "manifest": str(args.manifest),
        "every_speaker": args.every_speaker,
        "speaker_offset": args.speaker_offset,
        "filter_pool": args.filter_pool,
        "utterances": len(ids),
        "audio_s": round(sum(by_id[i]["duration"] for i in ids), 1),
        "teacher": args.teacher,
        "pack_s": args.pack_s,
        "normaliser": NORMALISER,
        **compare(alone, packed),
        "by_age": {g: compare([alone[k] for k in ks], [packed[k] for k in ks]) for g, ks in groups.items()},
        "filter": {k: filtered(files[k], files["second"], args.filter_pool) for k in ("alone", "packed")},
        "rtfx": rtfx,
        "machine": _machine(),
        "wall_s": round(time.time() - start, 1),
        "command": shlex.join(["python", "benchmarks/pack_labels.py", *(argv or sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine",)}, indent=1))
    return 0


def _ages(pool: Path, labels: dict[str, dict]) -> dict[str, float | None]:
    """Each label's speaker age, matched by audio file (the manifest has no ids of its own)."""
    age = {r["audio_filepath"]: r.get("age") for r in read_jsonl(pool)}
    return {i: _num(age.get(d["audio_filepath"])) for i, d in labels.items()}


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _machine() -> dict:
    from asr_distill.teacher import precision

    return {
        **precision.machine(),
        "cpu_flags_note": "speeds are comparable only on an otherwise idle machine",
    }


if __name__ == "__main__":
    raise SystemExit(main())
