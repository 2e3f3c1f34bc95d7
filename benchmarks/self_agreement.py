"""How often the 30 s teacher agrees with itself when the audio changes inaudibly.

    python benchmarks/self_agreement.py [--test-first N] [--threads 2]

The short-window bar asks a teacher decoding in a short window to write exactly the 30 s
teacher's text on >= 97% of speechocean762 test and AN4 test (``short_window``). That target
is only as steady as the 30 s teacher itself. This measures how steady: base in its full 30 s
context (the reference, as ``short_window.py`` runs it) labels each test set again after
changes a listener cannot hear, and each rerun's exact agreement with the reference (after
Whisper's English normaliser) is the ceiling that changing the window has to live under:

- ``shift_5ms``: 5 ms of digital silence before each clip (80 samples: half a mel hop, so
  every spectrogram frame moves; the content is the same).
- ``noise_60db``: white noise 60 dB below each clip's RMS (seeded by the clip's id).
- ``batch_4``: the same audio in batches of 4 instead of 8 (the floating-point order of the
  batched products changes, and so do fallback sampling's seeds, which come from each batch's
  ids: ``differing_both_greedy`` tells those apart).
- ``base_w20`` and ``base_w15``: the shipped 20 s floor and ``--min-window 15`` (a third
  faster in ``label_throughput``), in the same run, for scale.

Every system decodes as the labeler does by default (greedy, temperature fallback seeded per
batch, float32 encoder here), one after another on the same machine. WER against the
references is reported too, so it shows whether a change moved accuracy or only written forms.
Perturbed audio and labels are kept under ``runs/self_agreement/`` and resumed. Writes
``benchmarks/results/self_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from asr_distill.audio import load_audio, write_wav
from asr_distill.evaluate.bootstrap import paired_bootstrap
from asr_distill.evaluate.scoring import score_utterances
from asr_distill.jsonl import atomic_write_text, read_jsonl
from asr_distill.label import LabelRun
from asr_distill.teacher import load_teacher
from asr_distill.teacher.options import FULL_CONTEXT, ContextFloor, LabelOptions
from asr_distill.teacher.precision import machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from short_window import BAR, REFERENCE, ROOT, add_labeling_args, compare, label_timed, subset  # noqa: E402  (one labeling and comparison)

WORK = ROOT / "runs" / "self_agreement"
RESULTS = ROOT / "benchmarks" / "results" / "self_agreement.json"
SHIFT_SAMPLES = 80  # 5 ms at 16 kHz: half of the 10 ms mel hop
NOISE_DB = 60.0
INAUDIBLE = ("shift_5ms", "noise_60db", "batch_4")  # the changes a listener cannot hear
SYSTEMS = ("shift_5ms", "noise_60db", "base_w20", "base_w15", "batch_4")
NORMALISER = "format_insensitive"  # the WER deltas' (the bars' normaliser in the other issues)


def _shift(samples: np.ndarray, _: str) -> np.ndarray:
    return np.concatenate([np.zeros(SHIFT_SAMPLES, np.float32), samples])


def _noise(samples: np.ndarray, utt: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(utt.encode()))
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1e-4
    noise = rng.standard_normal(len(samples)) * rms * 10 ** (-NOISE_DB / 20)
    return (samples + noise).astype(np.float32)


PERTURB: dict[str, Callable[[np.ndarray, str], np.ndarray]] = {"shift_5ms": _shift, "noise_60db": _noise}


def perturbed(manifest: Path, name: str) -> Path:
    """``manifest`` with every clip rewritten by ``PERTURB[name]`` (kept: a rerun writes none again)."""
    out_dir = manifest.with_name(f"{manifest.stem}.{name}")
    lines = []
    for d in read_jsonl(manifest):
        wav = out_dir / f"{d['id']}.wav"
        if not wav.is_file():
            write_wav(wav, PERTURB[name](load_audio(d["audio_filepath"]), d["id"]))
        lines.append({**d, "audio_filepath": str(wav)})
    out = out_dir.with_name(f"{out_dir.name}.jsonl")  # not with_suffix: that would name the source
    atomic_write_text(out, "".join(json.dumps(d) + "\n" for d in lines))
    return out


def _systems(teacher, args) -> dict[str, tuple[str | None, LabelRun]]:
    """Each system: the perturbation its audio gets (None: as recorded) and how it labels."""
    full = LabelOptions(windows=FULL_CONTEXT)

    def run(options: LabelOptions = full, batch: int = args.batch_size) -> LabelRun:
        return LabelRun(teacher, options=options, batch_size=batch, precision=args.precision)

    return {
        REFERENCE: (None, run()),
        "shift_5ms": ("shift_5ms", run()),
        "noise_60db": ("noise_60db", run()),
        "base_w20": (None, run(LabelOptions(windows=ContextFloor(20.0)))),
        "base_w15": (None, run(LabelOptions(windows=ContextFloor(15.0)))),
        "batch_4": (None, run(batch=4)),
    }


def _measure(manifest: Path, systems: dict, work: Path) -> dict:
    """Label ``manifest`` (perturbed where a system asks) with every system; compare with the reference."""
    paths, timing = {}, {}
    for name, (perturbation, run) in systems.items():
        source = perturbed(manifest, perturbation) if perturbation else manifest
        out = work / f"{manifest.stem.split('.')[0]}.{name}.labels.jsonl"
        paths[name], timing[name] = label_timed(source, out, run)
    result = compare(paths, timing, REFERENCE)
    labels = {name: {d["id"]: d for d in read_jsonl(p)} for name, p in paths.items()}
    result["differing_both_greedy"] = _both_greedy(labels, result["agreement"])
    result["vs_reference"] = _vs_reference(labels)
    return result


def _vs_reference(labels: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Each system's WER against the reference decoding's, paired bootstrap over utterances.

    An inaudible change that moves WER by as much as a compared setting does marks the
    size of difference such a comparison cannot tell from the teacher's own noise.
    """
    ref = labels[REFERENCE]
    ids = list(ref)

    def scores(name: str):
        refs, hyps = [ref[i]["ref_text"] or "" for i in ids], [labels[name][i]["text"] for i in ids]
        return score_utterances(refs, hyps, NORMALISER, ids=ids)

    base, out = scores(REFERENCE), {}
    for name in labels:
        if name != REFERENCE:
            c = paired_bootstrap(scores(name), base, names=(name, REFERENCE), normaliser=NORMALISER)
            out[name] = {
                "delta": c.delta,
                "delta_ci": [c.delta_ci.low, c.delta_ci.high],
                "p_not_better": c.p_value,
            }
    return out


def _both_greedy(labels: dict[str, dict[str, dict]], agreements: dict[str, dict]) -> dict[str, int]:
    """Per system, how many differing utterances both decodings wrote greedily (no fallback sampling).

    Fallback samples with a seed drawn from the batch's ids, so ``batch_4`` samples anew
    where it falls back; a difference between two greedy decodings is the model's own.
    """

    def greedy(name: str, i: str) -> bool:
        return labels[name][i].get("temperature") == 0.0

    return {
        name: sum(greedy(REFERENCE, i) and greedy(name, i) for i in a["differing"])
        for name, a in agreements.items()
    }


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_labeling_args(ap)
    ap.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS, help="besides the reference")
    ap.add_argument("--work", type=Path, default=WORK, help="perturbed audio and labels (resumed)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args()


def main() -> None:
    args = _args()
    for d in (args.so762, args.an4):
        if not (d / "test.jsonl").is_file():
            sys.exit(f"{d / 'test.jsonl'} not found: this benchmark needs the shared speech data")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(args.teacher)
    systems = {
        name: spec for name, spec in _systems(teacher, args).items() if name in (REFERENCE, *args.systems)
    }
    m = args.test_first or "all"
    sets = {
        "speechocean762": subset(
            args.so762 / "test.jsonl", args.test_first, args.work / f"so762_test.first-{m}.jsonl"
        ),
        "an4": subset(args.an4 / "test.jsonl", args.test_first, args.work / f"an4_test.first-{m}.jsonl"),
    }
    measured = {name: _measure(path, systems, args.work) for name, path in sets.items()}
    ceiling = {
        name: max(a["fraction"] for s, a in r["agreement"].items() if s in INAUDIBLE)
        for name, r in measured.items()
    }
    result = {
        "reference": REFERENCE,
        "normaliser": "whisper_en",
        "agreement": {name: r["agreement"] for name, r in measured.items()},
        "best_inaudible_agreement": ceiling,
        "differing_both_greedy": {name: r["differing_both_greedy"] for name, r in measured.items()},
        "wer_vs_reference": {name: r["vs_reference"] for name, r in measured.items()},
        "short_window_bar": BAR,
        "bar_reachable_by_this_measure": {name: f >= BAR for name, f in ceiling.items()},
        "whole_test_sets": args.test_first is None,
        "wer": {name: r["wer"] for name, r in measured.items()},
        "rtfx": {name: r["rtfx"] for name, r in measured.items()},
        "test_sets": {name: r["utterances"] for name, r in measured.items()},
        "examples": {name: r["examples"] for name, r in measured.items()},
        "perturbations": {"shift_samples": SHIFT_SAMPLES, "noise_db_below_rms": NOISE_DB},
        "teacher": {"name": teacher.name, "weights_sha256": teacher.weights_sha256},
        "precision": args.precision,
        "batch_size": args.batch_size,
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                "agreement": {
                    n: {s: a["fraction"] for s, a in r["agreement"].items()} for n, r in measured.items()
                }
            }
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
