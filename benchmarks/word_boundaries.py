"""How far Whisper's word timestamps sit from where the words are: the pad a review span needs.

The review page plays each doubtful word padded by ``review_queue.PAD`` (seconds before and
after it), so the pad must cover the error of the word's timing. Piper speech has known word
boundaries: the voice's own phoneme durations (``include_alignments``, which patches the ONNX
model in memory) place every phoneme, so each word runs from its first phoneme's start to its
last phoneme's end. The read prompts of the speechocean762 pool (the text of the review
benchmark's pool) are synthesised and labeled by the teacher with ``word_timestamps``, as
``label --word-timestamps`` does; a prompt counts where Whisper's words are the prompt's words
one for one (the rest are counted, not used). For each word:

- ``start_late``: Whisper's start minus the true start (seconds; > 0: the span begins late);
- ``end_early``: the true end minus Whisper's end (> 0: the span stops early);
- ``pad_needed``: ``max(start_late, end_early, 0)``, the least pad either side that plays the
  whole word (a pad of two sides plays it when each side covers its own miss).

``coverage`` is the share of words a pad plays whole, at each pad of :data:`PADS`: ``"0.3"``
is 0.3 s either side, ``"0:0.3"`` none before and 0.3 s after. Synthetic
speech is clean and steady: on real accented or children's speech Whisper's timings are
unlikely to be closer, so read the figures as a floor for the pad.

    python benchmarks/word_boundaries.py [--every 10] [--model base]

Writes ``benchmarks/results/word_boundaries.json``. Without the speechocean762 pool the script
says so and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

import numpy as np

from asr_distill.jsonl import atomic_write_text
from asr_distill.quality.review_queue import PAD, Pad

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent / "shared" / "data" / "speechocean762" / "pool.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "word_boundaries.json"
WORK = ROOT / ".cache" / "bench_word_boundaries"
PADS = tuple(Pad(x, x) for x in (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)) + tuple(
    Pad(b, a) for b in (0.0, 0.05) for a in (0.2, 0.25, 0.3, 0.35, 0.4)
)
# Piper's phonemes that are not part of a word: word gaps, pauses, sentence start and end
_NOT_WORD = {" ", "^", "$", *string.punctuation}


def prompts(pool: Path, every: int) -> list[tuple[str, str]]:
    """``(id, text)`` of every ``every``-th distinct prompt of the pool."""
    seen: dict[str, str] = {}
    for line in pool.read_text().splitlines():
        item = json.loads(line)
        seen.setdefault(item["text"].strip(), item["utt_id"])
    return [(f"p{seen[t]}", t) for t in list(seen)[::every]]


def piper_words(chunk) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of each word of one Piper chunk, from its phoneme durations."""
    rate = chunk.sample_rate
    words: list[tuple[float, float]] = []
    t, current = 0, None
    for a in chunk.phoneme_alignments:
        inside = a.phoneme not in _NOT_WORD
        if inside and current is None:
            current = t
        if not inside and current is not None:
            words.append((current / rate, t / rate))
            current = None
        t += int(a.num_samples)
    if current is not None:
        words.append((current / rate, t / rate))
    return words


def synthesise(items: list[tuple[str, str]], work: Path) -> tuple[Path, dict[str, list]]:
    """One WAV per prompt and its manifest; returns the manifest and each prompt's word spans."""
    import soundfile as sf

    from asr_distill.synth import load_voice

    voice = load_voice(seed=0, alignments=True)  # seeded as `synth` seeds it: the same audio every run
    work.mkdir(parents=True, exist_ok=True)
    lines, spans = [], {}
    for utt_id, text in items:
        chunks = list(voice.synthesize(text, include_alignments=True))
        if len(chunks) != 1 or not chunks[0].phoneme_alignments:
            continue  # one sentence with alignments per prompt, or no ground truth
        audio = chunks[0].audio_float_array
        path = work / f"{utt_id}.wav"
        sf.write(path, audio, chunks[0].sample_rate, subtype="PCM_16")
        spans[utt_id] = piper_words(chunks[0])
        lines.append({"audio_filepath": str(path), "duration": len(audio) / chunks[0].sample_rate,
                      "text": text, "id": utt_id})  # fmt: skip
    manifest = work / "manifest.jsonl"
    atomic_write_text(manifest, "".join(json.dumps(x) + "\n" for x in lines))
    return manifest, spans


def _plain(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


def errors(labels, texts: dict[str, str], spans: dict[str, list]) -> tuple[np.ndarray, dict]:
    """``(start_late, end_early)`` per word of the prompts whose words Whisper matched one for one."""
    rows, counts = [], {"prompts": len(labels), "matched": 0, "other_words": 0, "no_alignment": 0}
    for lab in labels:
        truth = spans[lab.id]
        said = texts[lab.id].split()
        if len(truth) != len(said):
            counts["no_alignment"] += 1  # Piper's words are not the prompt's (a number read out)
            continue
        if [_plain(w.word) for w in lab.words] != [_plain(w) for w in said]:
            counts["other_words"] += 1
            continue
        counts["matched"] += 1
        rows += [(w.start - a, b - w.end) for w, (a, b) in zip(lab.words, truth, strict=True)]
    return np.asarray(rows, dtype=float).reshape(-1, 2), counts


def played(err: np.ndarray, pad: Pad) -> np.ndarray:
    """Which words ``pad`` plays whole: starts late by at most ``before``, ends early by at most ``after``."""
    return (err[:, 0] <= pad.before + 1e-9) & (err[:, 1] <= pad.after + 1e-9)


def summary(err: np.ndarray, pads=PADS) -> dict:
    """Percentiles of each error and the share of words each pad plays whole."""
    need = np.maximum(err.max(axis=1), 0.0)

    def pct(x: np.ndarray) -> dict:
        return {f"p{q}": round(float(np.percentile(x, q)), 3) for q in (5, 50, 95, 99)}

    return {
        "words": len(err),
        "start_late": pct(err[:, 0]),
        "end_early": pct(err[:, 1]),
        "pad_needed": pct(need) | {"max": round(float(need.max()), 3)},
        "coverage": {str(p): round(float(played(err, p).mean()), 4) for p in pads},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, default=POOL)
    ap.add_argument("--every", type=int, default=10, help="every Nth distinct prompt of the pool")
    ap.add_argument("--model", default="base")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.pool.is_file():
        print(f"skipped: the speechocean762 pool is not at {args.pool} (it sits in ../shared)")
        return
    from asr_distill.label import LabelRun, label
    from asr_distill.records import TeacherLabel
    from asr_distill.teacher import load_teacher
    from asr_distill.teacher.options import LabelOptions

    items = prompts(args.pool, args.every)
    manifest, spans = synthesise(items, WORK)
    run = LabelRun(load_teacher(args.model), "whisper", LabelOptions(word_timestamps=True))
    labels = [r for r in label(manifest, run) if isinstance(r, TeacherLabel)]
    err, counts = errors(labels, dict(items), spans)
    result = {
        "model": args.model,
        "data": f"Piper (joe-us) reading every {args.every}th distinct speechocean762 pool prompt",
        **counts,
        **summary(err),
        "review_pad_s": PAD._asdict(),
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("words", "matched", "pad_needed", "coverage")}))


if __name__ == "__main__":
    main()
