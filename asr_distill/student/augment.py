"""Waveform augmentation that makes clean or synthetic training audio sound like real use.

A student trained on clean read speech forgets how phones, rooms and noise sound. Each
effect here is one small function on a 16 kHz clip ``(N,)``; ``WaveAugment`` chains the
ones a config names, each with probability ``prob``, in the order sound travels: the
talker's rate (speed) and voice (pitch), the room (reverb), the background (noise), the
line (telephone).

Every random choice comes from the ``random.Random`` the caller passes, so the feature
cache seeds one per (clip, copy) and a cached copy is the same waveform on every rerun.
Only torchaudio (a core dependency) is used: no extra to install, no noise files to fetch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
TELEPHONE_RATE = 8000
# Hz: the narrow-band voice channel's edges (nominally 300 and 3400) vary from line to line
TELEPHONE_LOW = (200.0, 400.0)
TELEPHONE_HIGH = (3100.0, 3600.0)
MU_LAW_LEVELS = 256  # G.711's 8 bits
SPEED_STEP = 0.05  # factors on a grid: 1.05 is a 21:20 resampling, 1.0734 would be a huge one
NOISE_COLOURS = ("white", "pink", "brown")
# Pitch factors as small-integer ratios (about 1, 2, 3, 4 and 5 semitones up): resampling by
# 5:4 is quick, by 2**(4/12) it would be a huge filter (torchaudio's pitch_shift: seconds a clip).
PITCH_RATIOS = (Fraction(17, 16), Fraction(9, 8), Fraction(6, 5), Fraction(5, 4), Fraction(4, 3))
STFT_FFT, STFT_HOP = 512, 128


@dataclass(frozen=True)
class WaveAugment:
    """Named waveform effects, each applied with probability ``prob``; ranges drawn per clip.

    Attributes:
        names: effects in ``EFFECTS`` (any order given; applied in ``EFFECTS`` order).
        prob: chance each named effect is applied to a clip.
        speed: range of speed factors (1.1 is 10% faster, and 10% shorter).
        snr_db: range of signal-to-noise ratios for the generated noise.
        rt60_s: range of reverberation times of the synthetic rooms.
        pitch: range of factors a voice's pitch and formants are raised by (``PITCH_RATIOS``
            within it): one adult voice made to sound like women's and children's.
    """

    names: tuple[str, ...]
    prob: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    snr_db: tuple[float, float] = (5.0, 25.0)
    rt60_s: tuple[float, float] = (0.2, 0.8)
    pitch: tuple[float, float] = (1.05, 1.35)

    def __post_init__(self):
        unknown = [n for n in self.names if n not in EFFECTS]
        if unknown:
            raise ValueError(f"augment: unknown effect(s) {unknown}; choose from {list(EFFECTS)}")
        if not self.names:
            raise ValueError("augment: name at least one effect, or leave augment unset")
        if not 0 < self.prob <= 1:
            raise ValueError(f"augment_prob must be in (0, 1], got {self.prob}")
        lo, hi = self.speed
        if not 0.5 <= lo <= hi <= 2.0:
            raise ValueError(f"augment speed range must lie within [0.5, 2.0], got {self.speed}")
        if not pitch_ratios(*self.pitch):
            raise ValueError(
                f"augment pitch range {self.pitch} holds none of {[float(r) for r in PITCH_RATIOS]}"
            )

    def __call__(self, audio: np.ndarray, rng: random.Random, max_samples: int | None = None) -> np.ndarray:
        """An augmented copy of ``audio`` ``(N,)``; speed changes never make it longer than ``max_samples``.

        ``max_samples`` is the encoder window: a slowed clip cut at the window would lose
        words its transcript still has.
        """
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        limit = max_samples or math.inf
        for name, effect in EFFECTS.items():
            if name in self.names and rng.random() < self.prob:
                x = effect(self, x, rng, limit)
        peak = float(x.abs().max()) if x.numel() else 0.0
        if peak > 1.0:  # stay within full scale, as recorded audio is
            x = x / peak
        return x[0].numpy().astype(np.float32, copy=False)

    def signature(self) -> str:
        """Names the settings in the cache folder, so changed effects never reuse old copies."""
        names = "+".join(n for n in EFFECTS if n in self.names)
        ranges = (self.speed, self.snr_db, self.rt60_s) + ((self.pitch,) if "pitch" in self.names else ())
        return f"{names}-p{self.prob:g}-" + "-".join(f"{lo:g}_{hi:g}" for lo, hi in ranges)


def speed_factors(lo: float, hi: float, n: int, limit: float) -> list[float]:
    """Factors on the ``SPEED_STEP`` grid within ``[lo, hi]`` whose output of ``n`` samples fits ``limit``."""
    grid = [
        round(k * SPEED_STEP, 2)
        for k in range(math.ceil(lo / SPEED_STEP - 1e-9), int(hi / SPEED_STEP + 1e-9) + 1)
    ]
    return [f for f in grid if math.ceil(n / f) <= limit] or [1.0]


def speed(aug: WaveAugment, x: torch.Tensor, rng: random.Random, limit: float) -> torch.Tensor:
    """Speed perturbation (Ko et al. 2015): resampled, so tempo and pitch change together."""
    factor = rng.choice(speed_factors(*aug.speed, x.shape[-1], limit))
    if factor == 1.0:
        return x
    return AF.speed(x, SAMPLE_RATE, factor)[0]


def pitch_ratios(lo: float, hi: float) -> list[Fraction]:
    """The ``PITCH_RATIOS`` within ``[lo, hi]``."""
    return [r for r in PITCH_RATIOS if lo - 1e-9 <= r <= hi + 1e-9]


def pitch(aug: WaveAugment, x: torch.Tensor, rng: random.Random, limit: float) -> torch.Tensor:
    """A higher voice at the same tempo: stretched by the phase vocoder, then resampled shorter.

    Resampling raises the pitch and the formants together, as a shorter vocal tract does
    (vocal tract length perturbation, Jaitly and Hinton 2013, the usual aid for children's speech).
    """
    r = rng.choice(pitch_ratios(*aug.pitch))
    n, window = x.shape[-1], torch.hann_window(STFT_FFT)
    if n < STFT_FFT:
        return x
    spec = torch.stft(x, STFT_FFT, STFT_HOP, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * STFT_HOP, spec.shape[-2])[..., None]
    longer = AF.phase_vocoder(spec, 1 / float(r), advance)
    y = torch.istft(longer, STFT_FFT, STFT_HOP, window=window, length=round(n * float(r)))
    y = AF.resample(y, r.numerator, r.denominator)
    return torch.nn.functional.pad(y, (0, max(0, n - y.shape[-1])))[..., :n]


def coloured_noise(n: int, colour: str, gen: np.random.Generator) -> torch.Tensor:
    """Stationary noise ``(1, n)``: white, pink (1/f power) or brown (1/f^2), unit RMS."""
    white = gen.standard_normal(n)
    if colour != "white":
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n)
        f[0] = f[1] if n > 1 else 1.0
        spectrum /= f ** (0.5 if colour == "pink" else 1.0)
        white = np.fft.irfft(spectrum, n)
    white /= np.sqrt(np.mean(white**2)) + 1e-12
    return torch.from_numpy(white.astype(np.float32))[None]


def noise(aug: WaveAugment, x: torch.Tensor, rng: random.Random, limit: float) -> torch.Tensor:
    """Generated background noise of a random colour, at an SNR drawn from ``snr_db``."""
    gen = np.random.default_rng(rng.getrandbits(64))
    n = coloured_noise(x.shape[-1], rng.choice(NOISE_COLOURS), gen)
    snr = torch.tensor([rng.uniform(*aug.snr_db)])
    if float(x.pow(2).sum()) == 0.0:  # a silent clip has no SNR: leave it as it is
        return x
    return AF.add_noise(x, n, snr)


def room_impulse(rt60: float, gen: np.random.Generator) -> torch.Tensor:
    """A synthetic room ``(1, L)``: the direct path, then noise decaying 60 dB in ``rt60`` seconds."""
    n = max(2, int(rt60 * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = gen.standard_normal(n) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: -60 dB
    tail[0] = 0.0
    h = np.concatenate([[1.0], 0.3 * tail / (np.sqrt(np.sum(tail**2)) + 1e-12)])
    return torch.from_numpy(h.astype(np.float32))[None]


def reverb(aug: WaveAugment, x: torch.Tensor, rng: random.Random, limit: float) -> torch.Tensor:
    """Convolution with a synthetic room; the tail past the clip's end is cut, its level kept."""
    gen = np.random.default_rng(rng.getrandbits(64))
    wet = AF.fftconvolve(x, room_impulse(rng.uniform(*aug.rt60_s), gen))[..., : x.shape[-1]]
    rms_in, rms_out = x.pow(2).mean().sqrt(), wet.pow(2).mean().sqrt()
    return wet * (rms_in / rms_out) if rms_out > 0 else wet


def telephone(aug: WaveAugment, x: torch.Tensor, rng: random.Random, limit: float) -> torch.Tensor:
    """A narrow-band phone line: 8 kHz, about 300-3400 Hz, mu-law (G.711), back at 16 kHz, same length."""
    y = AF.resample(x, SAMPLE_RATE, TELEPHONE_RATE)
    y = AF.highpass_biquad(y, TELEPHONE_RATE, rng.uniform(*TELEPHONE_LOW))
    y = AF.lowpass_biquad(y, TELEPHONE_RATE, rng.uniform(*TELEPHONE_HIGH))
    y = AF.mu_law_decoding(AF.mu_law_encoding(y.clamp(-1, 1), MU_LAW_LEVELS), MU_LAW_LEVELS)
    y = AF.resample(y, TELEPHONE_RATE, SAMPLE_RATE)
    return torch.nn.functional.pad(y, (0, max(0, x.shape[-1] - y.shape[-1])))[..., : x.shape[-1]]


Effect = Callable[[WaveAugment, torch.Tensor, random.Random, float], torch.Tensor]
# Applied in this order: the talker, the room, the background, the line.
EFFECTS: dict[str, Effect] = {
    "speed": speed,
    "pitch": pitch,
    "reverb": reverb,
    "noise": noise,
    "telephone": telephone,
}


def wave_augment(names: Sequence[str] | None, prob: float) -> WaveAugment | None:
    """The augmentation a config's ``augment`` and ``augment_prob`` name (None when none is)."""
    return WaveAugment(tuple(names), prob) if names else None
