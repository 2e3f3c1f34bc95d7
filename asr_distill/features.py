"""Audio features and the Whisper encoder at any window length, shared by teacher and student.

The teacher's backends encode clips for labeling; the student's data and module encode
them for training, the same way, so a student sees exactly the features it is decoded
with. A window is a length in seconds up to Whisper's 30 s (see ``teacher.options``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import whisper

SAMPLE_RATE = whisper.audio.SAMPLE_RATE
FRAMES_PER_S = SAMPLE_RATE // whisper.audio.HOP_LENGTH  # mel frames per second (100)
NON_FINITE_FEATURES = "non_finite_features"  # the skip reason of a clip refused here
# Whisper's log-mel of any clip within full scale peaks near 1.65 (a full-scale square wave);
# each +0.5 is another 10x in amplitude, so 3.0 means samples ~300x beyond full scale.
MAX_LOG_MEL = 3.0


class FeatureError(ValueError):
    """Clips of a batch whose log-mel features are non-finite or absurd; nothing was encoded.

    ``clips`` pairs each such clip's audio (the very array given to ``encode``) with why, so
    the caller can record those clips as skips and encode the rest of the batch.
    """

    def __init__(self, clips: list[tuple[np.ndarray, str]]):
        super().__init__("; ".join(why for _, why in clips))
        self.clips = clips


def feature_problems(mels: torch.Tensor | np.ndarray) -> dict[int, str]:
    """``{row: why}`` for rows of ``(B, n_mels, T)`` log-mels no clip within full scale gives."""
    flat = torch.as_tensor(mels).reshape(len(mels), -1).float()
    finite = torch.isfinite(flat)
    peaks = torch.where(finite, flat, torch.full_like(flat, -torch.inf)).amax(-1).tolist()
    problems = {}
    for row, (all_finite, peak) in enumerate(zip(finite.all(-1).tolist(), peaks, strict=True)):
        if not all_finite:
            problems[row] = (
                "its log-mel features are not finite (NaN or infinity): the samples are far "
                "beyond full scale or not numbers"
            )
        elif peak > MAX_LOG_MEL:
            problems[row] = (
                f"its log-mel features peak at {peak:.2f}, above the {MAX_LOG_MEL} that audio "
                "within full scale gives: the samples are not scaled to [-1, 1]"
            )
    return problems


def check_features(audios: list[np.ndarray], mels: torch.Tensor | np.ndarray) -> None:
    """Refuse a batch holding clips whose features would make the encoder's output junk or NaN.

    Raises:
        FeatureError: naming those clips (the others are fine: encode them without these).
    """
    problems = feature_problems(mels)
    if problems:
        raise FeatureError([(audios[row], why) for row, why in problems.items()])


def log_mel_batch(
    audios: list[np.ndarray], window_s: float, n_mels: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """16 kHz clips → log-mel ``(B, n_mels, 100 * window_s)``, each padded or cut to the window.

    One clip at a time, because Whisper's log-mel clamps against the maximum of its input,
    and a batch-wide maximum would change quiet clips. Computed on ``device`` (None: the CPU).
    """
    n_samples = int(window_s * SAMPLE_RATE)
    return torch.stack(
        [
            whisper.log_mel_spectrogram(
                whisper.pad_or_trim(torch.from_numpy(a), n_samples), n_mels, device=device
            )
            for a in audios
        ]
    )


def encode_mels(model: whisper.model.Whisper, mels: torch.Tensor) -> torch.Tensor:
    """Whisper's encoder on a window of any length up to 30 s: ``(B, n_mels, 2T)`` → ``(B, T, d)``.

    The positional embedding is sliced to the input, so a 10 s window costs about a third
    of the 30 s one. openai-whisper's own ``AudioEncoder.forward`` insists on 30 s.
    """
    enc = model.encoder
    x = F.gelu(enc.conv1(mels))
    x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.positional_embedding[: x.shape[1]]
    for block in enc.blocks:
        x = block(x)
    return enc.ln_post(x)


__all__ = [
    "FRAMES_PER_S",
    "MAX_LOG_MEL",
    "NON_FINITE_FEATURES",
    "SAMPLE_RATE",
    "FeatureError",
    "check_features",
    "encode_mels",
    "feature_problems",
    "log_mel_batch",
]
