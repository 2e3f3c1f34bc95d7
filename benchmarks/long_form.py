"""Long-form labeling: recordings cut by Silero VAD or by energy, against each utterance alone.

Real utterances (AN4 test) are joined into a few recordings of several minutes, with random
pauses (0.3-2 s) and pink background noise at a moderate SNR, so each utterance's place in
its recording is known. The base teacher (the label stage's defaults) then labels:

- ``per_utterance``: each utterance alone (its span of the same noisy recording);
- ``silero`` and ``energy``: each whole recording, cut by that segmenter (``--segmenter``).

Each seed (``--seeds``, default 0 1 2) is one construction (pauses and noise); the top-level
rows pool the seeds, ``per_seed`` keeps each. ``--sweep-pad`` adds Silero rows that keep
another length of pause beside speech; the default (``vad.EDGE_PAD_S``) was chosen with it on
recordings built from AN4 *train*, not on the test set:

    python benchmarks/long_form.py [--an4 ../shared/data/an4] [--recordings 3] [--snr-db 15]
    python benchmarks/long_form.py --mid-row --sweep-pad 0.3     # benchmarks/results/long_form.json
    python benchmarks/long_form.py --split train --sample 130 --seeds 0 1 --sweep-pad 0.3 --mid-row \
        --out benchmarks/results/long_form_dev.json

``--manifest`` builds the recordings from other short utterances (read sentences rather than
AN4's spelled letters):

    python benchmarks/long_form.py --manifest ../shared/data/speechocean762/test.jsonl --sample 300 \
        --seeds 0 --recordings 3 --out benchmarks/results/long_form_speechocean.json

Each system's labels of each construction are written under ``.cache/bench_long_form/`` by the
label stage's resumable writer, so an interrupted run resumes where it stopped (its rows then carry
no speed: ``wall_s`` and ``rtfx`` are None).

Writes ``benchmarks/results/long_form.json``; the definitions of ``wer`` and ``lost_words``
are written into it. Without its data the script says so and writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "long_form.json"
WORK = ROOT / ".cache" / "bench_long_form"
NORMALISER = "format_insensitive"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
DEFINITIONS = {
    "wer": (
        "percent; per recording, the references of its utterances joined in order against the "
        "hypothesis texts joined in order (utterances for per_utterance, segments by offset for "
        f"silero/energy), each side normalised per unit with {NORMALISER}; errors summed over "
        "recordings over reference words"
    ),
    "lost_words": (
        "reference words of utterances that a cut falls inside (a boundary between two labeled "
        "segments strictly inside the utterance's clip, or a stretch left out as no_speech lying "
        "wholly inside it), which the word alignment of that recording marks as deleted; 0 for "
        "per_utterance, which has no cuts"
    ),
    "utterances_trimmed": (
        "utterances not cut whose clip a stretch left out as no_speech overlaps at an edge (the "
        "segmenter left out part of the clip's own leading or trailing margin)"
    ),
    "deleted_in_trimmed": (
        "deleted reference words of the utterances_trimmed (a trim that clipped a word shows here)"
    ),
    "silero_vs_per_utterance": (
        "paired bootstrap over utterances (1000 resamples), each utterance's errors summed over the "
        "constructions; delta = silero WER - per_utterance WER in points with its 95% interval, "
        "p_not_better the share of resamples where silero was not better; an utterance's errors are "
        "its substituted and deleted words and the words inserted after its last word in the "
        "recording's alignment; largest: the utterances whose errors differ most, with the words "
        "each system wrote there in each construction"
    ),
    "vs_per_utterance": (
        "every other row (energy, and any extra silero rows) against per_utterance, the same paired "
        "bootstrap as silero_vs_per_utterance, with the 3 largest differences"
    ),
    "vs_energy": "every silero row against the energy rule, the same paired bootstrap",
    "per_utterance_shift": (
        "rows per_utterance_shift_Xms: each utterance alone, as per_utterance, but its span starts X "
        "ms earlier (negative: later) in the same recording and ends where it ended; an inaudible "
        "change of the clip, to measure how far per_utterance itself moves"
    ),
    "silero_vs_shifted": "silero against each per_utterance_shift row, the same paired bootstrap",
    "pooled rows": (
        "the top-level rows sum errors and counts over every seed's construction; per_seed has each"
    ),
}


def build(args, utts: list, seed: int, work: Path) -> tuple[list[dict], list[dict]]:
    """Join the utterances into recordings; returns the recording and utterance manifest lines."""
    import soundfile as sf

    from asr_distill.audio import SAMPLE_RATE, load_audio
    from asr_distill.testing.long_form import join_clips

    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    recordings, lines = [], []
    for k, group in enumerate(np.array_split(np.arange(len(utts)), args.recordings)):
        members = [utts[i] for i in group]
        clips = [load_audio(u.audio_filepath, u.offset, u.duration) for u in members]
        joined = join_clips(clips, list(rng.uniform(*args.pause_s, len(clips))), snr_db=args.snr_db, rng=rng)
        path = work / f"rec{k}.wav"
        sf.write(path, joined.audio, SAMPLE_RATE, subtype="PCM_16")
        recordings.append({"id": f"rec{k}", "audio_filepath": str(path), "duration": joined.duration})
        for u, (a, b) in zip(members, joined.spans, strict=True):
            lines.append(
                {
                    "id": u.id,
                    "recording": f"rec{k}",
                    "audio_filepath": str(path),
                    "offset": a,
                    "duration": b - a,
                }
                | {"text": u.text}
            )
    return recordings, lines


def shifted(lines: list[dict], ms: float) -> list[dict]:
    """Each utterance's span starting ``ms`` milliseconds earlier (negative: later), same end."""
    out = []
    for d in lines:
        start = max(0.0, d["offset"] - ms / 1000.0)
        out.append(d | {"offset": start, "duration": d["offset"] + d["duration"] - start})
    return out


def _shift_name(ms: float) -> str:
    return f"per_utterance_shift_{ms:g}ms"


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text(
        "".join(json.dumps({k: v for k, v in d.items() if k != "recording"}) + "\n" for d in lines)
    )
    return path


def run_system(manifest: Path, run, out: Path) -> tuple[list, float | None]:
    """Label ``manifest`` into ``out``, resuming what an interrupted run left there.

    Returns the records (labels and skips) and the wall seconds, or None for the time when part
    of the work was already done (a resumed run's speed is not a measurement).
    """
    from asr_distill.jsonl import read_jsonl
    from asr_distill.label import label_to_file, skips_path
    from asr_distill.quality.filter import read_labels
    from asr_distill.records import Skip, from_dict

    out.parent.mkdir(parents=True, exist_ok=True)
    stats = label_to_file(manifest, out, run)
    records = read_labels(out) + [from_dict(Skip, d) for d in read_jsonl(skips_path(out))]
    return records, None if stats.already_done else stats.wall_s


def _label_file(args, lines: list[dict], work: Path, system: tuple) -> Path:
    """Where one system's labels of one construction go, named by everything that shapes them."""
    what = {
        "model": args.model,
        "batch_size": args.batch_size,
        "recordings": args.recordings,
        "pause_s": list(args.pause_s),
        "snr_db": args.snr_db,
        "ids": [d["id"] for d in lines],
        "system": [str(x) for x in system[2:]],
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    return work / "labels" / f"{system[0]}.{key}.jsonl"


def _units(
    records: list, lines: list[dict], rec_id: str, per_utterance: bool
) -> list[tuple[float, float, str | None]]:
    """``(start, end, text)`` of what was labeled in one recording, in order; left out: text None."""
    if per_utterance:
        by_id = {r.id: r for r in records}
        return [
            (d["offset"], d["offset"] + d["duration"], by_id[d["id"]].text)
            for d in lines
            if d["recording"] == rec_id
        ]
    mine = [r for r in records if r.id.split("@")[0] == rec_id]
    return sorted((r.offset, r.offset + r.duration, getattr(r, "text", None)) for r in mine)


def _touched(units: list[tuple[float, float, str | None]], a: float, b: float) -> tuple[bool, bool]:
    """Whether the clip ``[a, b]`` is cut, and whether its margin is trimmed.

    Cut: a boundary between two labeled units, or a stretch left out wholly inside it, falls
    inside the clip. Trimmed: a stretch left out overlaps the clip's edge.
    """
    cut = any(
        x[1] == y[0] and x[2] is not None and y[2] is not None and a < x[1] < b
        for x, y in zip(units[:-1], units[1:], strict=True)
    )
    out = [(s, e) for s, e, t in units if t is None]
    cut |= any(a < s and e < b for s, e in out)
    trimmed = any(s < b and e > a and not (a < s and e < b) for s, e in out)
    return cut, trimmed


def _attributed(out, owner: list[int], n: int) -> list[dict]:
    """Per utterance of one recording: its errors in the recording's alignment, and the words aligned to it.

    Substituted and deleted reference words count against the utterance they belong to;
    inserted words against the utterance of the reference word before them.
    """
    hyp = out.hypotheses[0]
    rows = [
        dict.fromkeys(("substitutions", "deletions", "insertions", "ref_words"), 0) | {"hyp": []}
        for _ in range(n)
    ]
    for k in owner:
        rows[k]["ref_words"] += 1
    for c in out.alignments[0]:
        if c.type == "insert":
            row = rows[owner[max(c.ref_start_idx - 1, 0)]] if owner else rows[0]
            row["insertions"] += c.hyp_end_idx - c.hyp_start_idx
            row["hyp"] += hyp[c.hyp_start_idx : c.hyp_end_idx]
            continue
        for j in range(c.ref_start_idx, c.ref_end_idx):
            row = rows[owner[j]]
            if c.type == "substitute":
                row["substitutions"] += 1
            elif c.type == "delete":
                row["deletions"] += 1
            if c.type != "delete":
                row["hyp"].append(hyp[c.hyp_start_idx + j - c.ref_start_idx])
    return rows


def score(records: list, lines: list[dict], recordings: list[dict], per_utterance: bool) -> tuple[dict, dict]:
    """WER, lost words and cut counts over all recordings (see ``DEFINITIONS``).

    Also returns, per utterance id, its errors and the words aligned to it (``_attributed``).
    """
    import jiwer

    from asr_distill.normalise import get_normaliser

    norm = get_normaliser(NORMALISER)
    counts = dict.fromkeys(
        ("errors", "ref_words", "lost_words", "deleted_words", "cuts", "utterances_straddled")
        + ("utterances_trimmed", "deleted_in_trimmed"),
        0,
    )
    by_utt: dict[str, dict] = {}
    for rec in recordings:
        utts = [d for d in lines if d["recording"] == rec["id"]]
        units = _units(records, lines, rec["id"], per_utterance)
        owner = [i for i, d in enumerate(utts) for _ in norm(d["text"]).split()]
        ref = " ".join(norm(d["text"]) for d in utts)
        hyp = " ".join(norm(t) for _, _, t in units if t)
        out = jiwer.process_words(ref, hyp)
        by_utt |= {d["id"]: e for d, e in zip(utts, _attributed(out, owner, len(utts)), strict=True)}
        gone = {
            i for c in out.alignments[0] if c.type == "delete" for i in range(c.ref_start_idx, c.ref_end_idx)
        }
        touched = [(False, False)] * len(utts)
        if not per_utterance:
            touched = [_touched(units, d["offset"], d["offset"] + d["duration"]) for d in utts]
        counts["errors"] += out.substitutions + out.deletions + out.insertions
        counts["ref_words"] += out.substitutions + out.deletions + out.hits
        counts["cuts"] += 0 if per_utterance else len(units) - 1
        counts["utterances_straddled"] += sum(cut for cut, _ in touched)
        counts["utterances_trimmed"] += sum(trim and not cut for cut, trim in touched)
        counts["deleted_words"] += len(gone)
        counts["lost_words"] += sum(1 for i in gone if touched[owner[i]][0])
        counts["deleted_in_trimmed"] += sum(1 for i in gone if touched[owner[i]] == (False, True))
    return {"wer": round(100.0 * counts["errors"] / counts["ref_words"], 2)} | counts, by_utt


def pooled(rows: list[dict]) -> dict:
    """One row over several constructions: counts summed, WER over all their reference words."""
    keys = [k for k, v in rows[0].items() if isinstance(v, int)]
    total = {k: sum(r[k] for r in rows) for k in keys}
    return (
        {"wer": round(100.0 * total["errors"] / total["ref_words"], 2)}
        | total
        | {
            "wer_per_seed": [r["wer"] for r in rows],
            "skipped_s": round(sum(r["skipped_s"] for r in rows), 2),
        }
        | _speed(rows)
        | {k: rows[0][k] for k in ("segment_s", "cut_pause_s")}
    )


def _speed(rows: list[dict]) -> dict:
    """Pooled wall time and RTFx; both None when any construction resumed (its time is partial)."""
    if any(r["wall_s"] is None for r in rows):
        return {"wall_s": None, "rtfx": None}
    wall = sum(r["wall_s"] for r in rows)
    return {"wall_s": round(wall, 1), "rtfx": round(sum(r["audio_s"] for r in rows) / wall, 2)}


@contextlib.contextmanager
def _silero_pad(pad: float | None):
    """Silero pieces keep ``pad`` seconds beside speech (None: the default; inf: nothing left out)."""
    from asr_distill import vad

    if pad is None:
        yield
        return
    split, least = vad.split_at_speech, vad.MIN_LEFT_OUT_S
    if math.isinf(pad):
        vad.MIN_LEFT_OUT_S = math.inf  # no stretch is long enough to leave out: cuts mid-pause
    else:
        vad.split_at_speech = functools.partial(split, pad_s=pad)
    try:
        yield
    finally:
        vad.split_at_speech, vad.MIN_LEFT_OUT_S = split, least


def _cut_pause(segmenter: str, cut: float | None) -> float | str | None:
    """The pause a silero row cut at, as JSON can hold it (``packed``: no pause cut)."""
    from asr_distill.vad import CUT_PAUSE_S

    if segmenter != "silero":
        return None
    cut = CUT_PAUSE_S if cut is None else cut
    return cut if math.isfinite(cut) else "packed"


def run_systems(
    args, teacher, manifests: tuple[Path, Path], lines: list[dict], recordings: list[dict]
) -> tuple[dict, dict]:
    """Label with each system in turn; one scored row per system, and its per-utterance errors."""
    from asr_distill.label import LabelRun
    from asr_distill.records import Skip

    audio_s = sum(r["duration"] for r in recordings)
    result: dict = {}
    attributed: dict = {}
    systems = [
        ("per_utterance", manifests[0], "energy", args.segment_s),
        ("silero", manifests[1], "silero", args.segment_s),
        ("energy", manifests[1], "energy", args.segment_s),
    ]
    systems = [(*s, args.cut_pause_s if s[2] == "silero" else None, None) for s in systems]
    systems += [(f"silero_{s:g}s", manifests[1], "silero", s, math.inf, None) for s in args.sweep]
    systems += [
        (f"silero_cut_{c:g}s", manifests[1], "silero", args.segment_s, c, None) for c in args.sweep_cut
    ]
    systems += [
        (f"silero_pad_{p:g}s", manifests[1], "silero", args.segment_s, args.cut_pause_s, p)
        for p in args.sweep_pad
    ]
    if args.mid_row:
        systems.append(("silero_mid", manifests[1], "silero", args.segment_s, args.cut_pause_s, math.inf))
    work = manifests[0].parent
    for ms in args.shift_ms:
        # named explicitly: a suffix swap on "utterances.jsonl" could name the unshifted manifest
        path = _write(work / f"utterances_shift_{ms:g}ms.jsonl", shifted(lines, ms))
        systems.append((_shift_name(ms), path, "energy", args.segment_s, None, None))
    for system in systems:
        name, manifest, segmenter, segment_s, cut, pad = system
        run = LabelRun(
            teacher, batch_size=args.batch_size, segmenter=segmenter, segment_s=segment_s, cut_pause_s=cut
        )
        with _silero_pad(pad):
            records, wall = run_system(manifest, run, _label_file(args, lines, manifest.parent, system))
        alone = name.startswith("per_utterance")
        row, by_utt = score(records, lines, recordings, per_utterance=alone)
        attributed[name] = by_utt
        skips = [r for r in records if isinstance(r, Skip)]
        row |= {
            "segment_s": segment_s,
            "cut_pause_s": _cut_pause(segmenter, cut),
            "segments": len(records) - len(skips),
            "skips": {
                reason: sum(1 for s in skips if s.reason == reason) for reason in {s.reason for s in skips}
            },
            "skipped_s": round(sum(s.duration for s in skips), 2),
            "audio_s": round(audio_s, 1),
            "wall_s": None if wall is None else round(wall, 1),
            "rtfx": None if wall is None else round(audio_s / wall, 2),
        }
        result[name] = row
        print(name, json.dumps(row), flush=True)
    return result, attributed


def compare(seeds: list[dict], a: str, b: str, lines: list[dict], top: int = 8) -> dict:
    """System ``a`` against ``b`` utterance by utterance, over every construction.

    Each utterance's errors are summed over the constructions before the paired bootstrap
    resamples utterances: the constructions share their utterances, so an utterance is the
    unit of evidence, not an utterance in one construction. ``largest`` lists the
    utterances whose errors differ most, with what each system wrote there in each construction.
    """
    from asr_distill.evaluate.bootstrap import paired_bootstrap
    from asr_distill.records import UtteranceScore

    counts = ("substitutions", "deletions", "insertions", "ref_words")
    refs = {d["id"]: d["text"] for d in lines}

    def scores(name: str) -> list:
        return [
            UtteranceScore(
                id=i,
                ref=refs[i],
                hyp="",
                ref_norm="",
                hyp_norm="",
                **{k: sum(seed[name][i][k] for seed in seeds) for k in counts},
            )
            for i in refs
        ]

    sa, sb = scores(a), scores(b)
    paired = paired_bootstrap(sa, sb, names=(a, b), normaliser=NORMALISER)
    diff = {x.id: x.errors - y.errors for x, y in zip(sa, sb, strict=True)}
    largest = sorted((i for i in diff if diff[i]), key=lambda i: -abs(diff[i]))[:top]
    return {
        "delta": paired.delta,
        "delta_ci": [paired.delta_ci.low, paired.delta_ci.high],
        "p_not_better": paired.p_value,
        "utterances": paired.utterances,
        "utterances_worse": sum(1 for v in diff.values() if v > 0),
        "utterances_better": sum(1 for v in diff.values() if v < 0),
        "errors_added": sum(v for v in diff.values() if v > 0),
        "errors_removed": -sum(v for v in diff.values() if v < 0),
        "largest": [
            {
                "id": i,
                "errors_minus": diff[i],
                "ref": refs[i],
                a: [" ".join(seed[a][i]["hyp"]) for seed in seeds],
                b: [" ".join(seed[b][i]["hyp"]) for seed in seeds],
            }
            for i in largest
        ],
    }


def _bars(rows: dict) -> dict:
    return {
        "silero_within_0.5_of_per_utterance": rows["silero"]["wer"] <= rows["per_utterance"]["wer"] + 0.5,
        "silero_no_worse_than_energy": rows["silero"]["wer"] <= rows["energy"]["wer"],
    }


def _machine(threads: int) -> dict:
    """The CPU the speed figures came from (bf16 units change Whisper's speed by 1.3-1.5x)."""
    import torch

    from asr_distill.teacher.backends import cpu_has_bf16

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "cpu_flags": sorted(flags & set(CPU_FLAGS)),
        "cpu_bf16_units": cpu_has_bf16(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--an4", default=str(ROOT.parent / "shared" / "data" / "an4"))
    ap.add_argument("--split", choices=("test", "train"), default="test", help="which AN4 manifest")
    ap.add_argument(
        "--manifest",
        default=None,
        help="build the recordings from this manifest of short utterances instead of AN4 "
        "(e.g. ../shared/data/speechocean762/test.jsonl)",
    )
    ap.add_argument("--utterances", type=int, default=0, help="first N of the split (0: all)")
    ap.add_argument("--sample", type=int, default=0, help="N utterances drawn at random (0: no draw)")
    ap.add_argument("--sample-seed", type=int, default=7)
    ap.add_argument(
        "--sweep-pad",
        type=float,
        nargs="*",
        default=[],
        help="more silero rows, one per pause kept beside speech where the rest is left out",
    )
    ap.add_argument(
        "--mid-row",
        action="store_true",
        help="a silero row cut in the middle of each pause, nothing left out (the behaviour before trimming)",
    )
    ap.add_argument(
        "--shift-ms",
        type=float,
        nargs="*",
        default=[],
        help="more per-utterance rows, each span starting this many ms earlier (negative: later)",
    )
    ap.add_argument("--recordings", type=int, default=3)
    ap.add_argument("--pause-s", type=float, nargs=2, default=(0.3, 2.0))
    ap.add_argument("--snr-db", type=float, default=15.0)
    ap.add_argument("--model", default="base")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--segment-s", type=float, default=30.0, help="longest segment (label --segment-s)")
    ap.add_argument(
        "--sweep", type=float, nargs="*", default=[], help="more silero rows, one per longest segment"
    )
    ap.add_argument(
        "--cut-pause-s",
        type=float,
        default=None,
        help="label --cut-pause-s for the silero row (default: its default)",
    )
    ap.add_argument(
        "--sweep-cut", type=float, nargs="*", default=[], help="more silero rows, one per --cut-pause-s"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="one construction (pauses, noise) per seed"
    )
    ap.add_argument("--out", default=str(RESULTS))
    return ap.parse_args()


def main() -> None:
    args = _args()
    manifest = Path(args.manifest) if args.manifest else Path(args.an4) / f"{args.split}.jsonl"
    name = f"{manifest.parent.name} {manifest.stem}" if args.manifest else f"AN4 {args.split}"
    if not manifest.is_file():
        print(f"skipped: {name} not found at {manifest} (the data sits in ../shared beside the checkout)")
        return
    import torch

    from asr_distill.jsonl import atomic_write_text
    from asr_distill.manifest import read_manifest
    from asr_distill.records import Utterance
    from asr_distill.teacher import load_teacher
    from asr_distill.vad import EDGE_PAD_S

    torch.set_num_threads(args.threads)
    utts = [u for u in read_manifest(manifest) if isinstance(u, Utterance)]
    utts = utts[: args.utterances or None]
    if args.sample:
        draw = np.random.default_rng(args.sample_seed).choice(len(utts), args.sample, replace=False)
        utts = [utts[i] for i in sorted(draw)]
    teacher = load_teacher(args.model)
    per_seed, attributed, audio_s = [], [], 0.0
    for seed in args.seeds:
        work = WORK / f"{name.replace(' ', '_')}_seed{seed}"
        recordings, lines = build(args, utts, seed, work)
        manifests = (_write(work / "utterances.jsonl", lines), _write(work / "recordings.jsonl", recordings))
        seconds = sum(r["duration"] for r in recordings)
        audio_s += seconds
        print(f"seed {seed}: {len(utts)} utterances in {len(recordings)} recordings, {seconds / 60:.1f} min")
        rows, errors = run_systems(args, teacher, manifests, lines, recordings)
        per_seed.append({"seed": seed} | rows)
        attributed.append(errors)
    result = {name: pooled([row[name] for row in per_seed]) for name in per_seed[0] if name != "seed"}
    result |= {
        "bar": _bars(result),
        "bar_per_seed": {row["seed"]: _bars(row) for row in per_seed},
        "silero_vs_per_utterance": compare(attributed, "silero", "per_utterance", lines),
        "vs_per_utterance": {
            row: compare(attributed, row, "per_utterance", lines, top=3)
            for row in attributed[0]
            if row not in ("per_utterance", "silero")
        },
        "vs_energy": {
            row: compare(attributed, row, "energy", lines, top=3)
            for row in attributed[0]
            if row.startswith("silero")
        },
        "silero_vs_shifted": {
            _shift_name(ms): compare(attributed, "silero", _shift_name(ms), lines, top=3)
            for ms in args.shift_ms
        },
        "per_seed": per_seed,
        "definitions": DEFINITIONS,
        "normaliser": NORMALISER,
        "model": args.model,
        "data": f"{name} ({manifest})"
        + (f", {args.sample} drawn (seed {args.sample_seed})" if args.sample else ""),
        "utterances": len(utts),
        "recordings": len(recordings),
        "audio_s": round(audio_s, 1),
        "speech_s": round(len(args.seeds) * sum(d["duration"] for d in lines), 1),
        "pause_s": list(args.pause_s),
        "segment_s": args.segment_s,
        "cut_pause_s": _cut_pause("silero", args.cut_pause_s),
        "pad_s": EDGE_PAD_S,
        "snr_db": args.snr_db,
        "noise": "pink (1/f), through speech and pauses, SNR against the clips' mean power",
        "seeds": args.seeds,
        "machine": _machine(args.threads),
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["bar"]))


if __name__ == "__main__":
    main()
