"""The Whisper encoder in two parts: a frozen bottom whose output is cached, and a trained top.

Accents and children's voices may need the encoder to adapt, but training all of it costs
a full encoder pass forward and back each step. Training only its top blocks needs the
frozen bottom's output once per clip: the data caches ``encoder_bottom``'s hidden states
and the student runs ``encoder_top`` on them each step. Together they are
``features.encode_mels``, at any window length.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from whisper.model import Whisper


def encoder_bottom(model: Whisper, mels: torch.Tensor, blocks: int) -> torch.Tensor:
    """Hidden states after the first ``blocks`` encoder blocks: ``(B, n_mels, 2T)`` → ``(B, T, d)``."""
    enc = model.encoder
    x = F.gelu(enc.conv1(mels))
    x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.positional_embedding[: x.shape[1]]
    for block in enc.blocks[:blocks]:
        x = block(x)
    return x


def encoder_top(model: Whisper, hidden: torch.Tensor, start: int) -> torch.Tensor:
    """The encoder's output from hidden states ``(B, T, d)`` entering block ``start`` (then ``ln_post``)."""
    enc = model.encoder
    x = hidden
    for block in enc.blocks[start:]:
        x = block(x)
    return enc.ln_post(x)


def bottom_sha(model: Whisper, blocks: int) -> str:
    """sha256 of the weights ``encoder_bottom`` uses, salted with ``blocks``: the cache key of its outputs.

    The top blocks are left out: they change as they train, and the cached states do not.
    """
    h = hashlib.sha256(f"encoder-bottom-{blocks}".encode())
    for k, v in sorted(model.encoder.state_dict().items()):
        if k.startswith("ln_post.") or (k.startswith("blocks.") and int(k.split(".")[1]) >= blocks):
            continue
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()
