"""Long recordings built from short clips, with every clip's place known.

Real utterances joined by pauses of chosen lengths, over background noise at a chosen
signal-to-noise ratio: a reference for long-form labeling (what was said, and where)
without aligning anything by hand. ``tests/test_vad.py`` and ``benchmarks/long_form.py``
build their recordings here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr_distill.audio import SAMPLE_RATE


@dataclass(frozen=True)
class JoinedRecording:
    """Clips joined into one recording.

    Attributes:
        audio: ``(T,)`` float32 at ``SAMPLE_RATE``.
        spans: ``(start_s, end_s)`` of each clip in ``audio``, in order.
    """

    audio: np.ndarray
    spans: tuple[tuple[float, float], ...]

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return len(self.audio) / SAMPLE_RATE


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` float32 noise of unit RMS whose power falls as 1/f, like room and fan noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def join_clips(
    clips: Sequence[np.ndarray],
    pauses_s: Sequence[float],
    *,
    tail_s: float = 1.0,
    snr_db: float | None = None,
    rng: np.random.Generator | None = None,
) -> JoinedRecording:
    """Join ``clips`` with ``pauses_s[i]`` of silence before clip ``i``, then noise over all of it.

    Args:
        clips: ``(T_i,)`` float32 clips at ``SAMPLE_RATE``.
        pauses_s: one pause per clip, in seconds, before it.
        tail_s: silence after the last clip.
        snr_db: pink noise at this ratio to the clips' mean power (None: no noise). The
            noise runs through the pauses too, so a pause is quiet only relative to speech.
        rng: noise source (default: seeded with 0).

    Raises:
        ValueError: ``clips`` and ``pauses_s`` differ in length.
    """
    if len(clips) != len(pauses_s):
        raise ValueError(f"{len(clips)} clips but {len(pauses_s)} pauses; give one pause per clip")
    parts: list[np.ndarray] = []
    spans = []
    pos = 0
    for clip, pause in zip(clips, pauses_s, strict=True):
        gap = round(pause * SAMPLE_RATE)
        parts += [np.zeros(gap, np.float32), np.asarray(clip, np.float32)]
        spans.append(((pos + gap) / SAMPLE_RATE, (pos + gap + len(clip)) / SAMPLE_RATE))
        pos += gap + len(clip)
    parts.append(np.zeros(round(tail_s * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    if snr_db is not None:
        speech_rms = float(np.sqrt(np.mean(np.concatenate(clips).astype(np.float64) ** 2)))
        noise = pink_noise(len(audio), rng or np.random.default_rng(0))
        audio = np.clip(audio + noise * speech_rms / 10 ** (snr_db / 20), -1.0, 1.0)
    return JoinedRecording(audio.astype(np.float32), tuple(spans))


__all__ = ["JoinedRecording", "join_clips", "pink_noise"]
