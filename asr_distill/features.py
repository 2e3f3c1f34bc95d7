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


def log_mel_batch(audios: list[np.ndarray], window_s: float, n_mels: int) -> torch.Tensor:
    """16 kHz clips → log-mel ``(B, n_mels, 100 * window_s)``, each padded or cut to the window.

    One clip at a time, because Whisper's log-mel clamps against the maximum of its input,
    and a batch-wide maximum would change quiet clips.
    """
    n_samples = int(window_s * SAMPLE_RATE)
    return torch.stack([
        whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a), n_samples), n_mels)
        for a in audios
    ])


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


__all__ = ["FRAMES_PER_S", "SAMPLE_RATE", "encode_mels", "log_mel_batch"]
