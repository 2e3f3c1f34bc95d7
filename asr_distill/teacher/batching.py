"""How many clips one decoding batch holds: ``auto`` sizes it from the GPU's free memory.

On a CPU the batch is not memory-bound: 8 clips was the fastest size measured on 2 cores
(``benchmarks/label_throughput.py``), and larger batches only pad more. On a GPU the
per-token decoding loop costs nearly the same for 8 clips as for hundreds, so the batch
should be as large as memory allows: its size comes from the free memory and the model's
own dimensions (the decoder's cross-attention cache dominates, and it grows with the
model's width, depth and the encoder window), halved for the allocator's slack and capped
where a larger batch was measured to gain no more.
"""

from __future__ import annotations

import torch
from whisper.model import ModelDimensions

from .options import AUTO_BATCH, DEFAULT_BATCH_SIZE, MAX_AUTO_BATCH, WINDOW_S

MEMORY_SHARE = 0.5  # of the memory free after the model loads: activations, fragmentation, others
KV_COPIES = 2  # the self-attention cache is copied once per step (``torch.cat``)
FRAMES_PER_S = 50  # encoder output frames per second of window


def clip_bytes(dims: ModelDimensions, bytes_per_value: int, window_s: float = WINDOW_S) -> int:
    """Peak memory one clip takes while it decodes in a ``window_s`` encoder window.

    The cross-attention keys and values (every decoder layer, every frame) and the
    self-attention cache up to the token limit, both copied once per step; the encoder's
    widest activation (its MLP, four times the width); the features and the log-mel input;
    and the few float32 rows of the vocabulary each step keeps (logits, log-probabilities,
    entropies).
    """
    frames = int(window_s * FRAMES_PER_S)
    cross = 2 * dims.n_text_layer * frames * dims.n_text_state
    self_attn = 2 * dims.n_text_layer * dims.n_text_ctx * dims.n_text_state
    encoder = 4 * frames * dims.n_audio_state + frames * dims.n_audio_state
    values = KV_COPIES * (cross + self_attn) + encoder
    mel = dims.n_mels * 2 * frames * 4
    vocab_rows = 6 * dims.n_vocab * 4
    return values * bytes_per_value + mel + vocab_rows


def auto_batch_size(dims: ModelDimensions, free_bytes: int, bytes_per_value: int) -> int:
    """The largest batch whose clips fit in ``MEMORY_SHARE`` of ``free_bytes``, up to the cap."""
    fits = int(MEMORY_SHARE * free_bytes) // clip_bytes(dims, bytes_per_value)
    return max(1, min(MAX_AUTO_BATCH, fits))


def resolve_batch_size(batch_size: int | str, model, dtype: torch.dtype | None) -> int:
    """``batch_size`` as a number: ``auto`` is sized from free GPU memory, 8 on a CPU.

    ``model`` is the loaded Whisper on its device; ``dtype`` the dtype it decodes in
    (None: float32).
    """
    if batch_size != AUTO_BATCH:
        return int(batch_size)
    device = next(model.parameters()).device
    if device.type != "cuda":
        return DEFAULT_BATCH_SIZE
    free, _ = torch.cuda.mem_get_info(device)
    # memory torch's allocator holds but no tensor uses is free for this batch too
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    bytes_per_value = torch.finfo(dtype).bits // 8 if dtype is not None else 4
    return auto_batch_size(model.dims, free, bytes_per_value)


__all__ = ["MAX_AUTO_BATCH", "auto_batch_size", "clip_bytes", "resolve_batch_size"]
