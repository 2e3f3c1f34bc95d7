"""Word timings from the teacher's cross-attention: each word's start, end and probability.

openai-whisper times words by teacher-forcing the decoded text once more and aligning the
attention of a few cross-attention heads (the model's ``alignment_heads``) with the audio
frames by dynamic time warping. ``whisper.timing.find_alignment`` does that one clip at a
time from a mel it encodes again; here one decoder pass serves the whole batch, on the
encoder outputs the labeler already has (a shortened context included), and whisper's own
median filter, DTW, word splitting and punctuation merging do the rest. CTranslate2's
``align`` returns the same path for the faster-whisper backend; ``words_from_path`` turns
either into records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from whisper.audio import TOKENS_PER_SECOND
from whisper.model import Whisper, disable_sdpa
from whisper.timing import WordTiming as _Aligned
from whisper.timing import dtw, median_filter, merge_punctuations
from whisper.tokenizer import Tokenizer

from ..features import FRAMES_PER_S
from ..records import WordTiming

MEDIAN_FILTER_WIDTH = 7  # whisper's and faster-whisper's default
# whisper.transcribe's defaults: punctuation that joins the next word, or the previous one
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_ENDS = ".。!！?？"
MAX_MEDIAN_WORD_S = 0.7  # whisper's cap on the median word duration its trimming uses


def alignment_prompt(tokenizer: Tokenizer) -> list[int]:
    """The tokens before the text in the alignment pass: the start sequence, then no-timestamps."""
    return [*tokenizer.sot_sequence, tokenizer.no_timestamps]


@torch.no_grad()
def _cross_attention(model: Whisper, features: torch.Tensor, rows: torch.Tensor):
    """One teacher-forced decoder pass: alignment heads' attention logits and the output logits.

    Args:
        model: the Whisper model whose ``alignment_heads`` are read.
        features: ``(B, T, d)`` encoder outputs.
        rows: ``(B, S)`` prompt + text + end tokens, padded at the end (causal: padding
            changes nothing before it).

    Returns:
        ``(B, A, S, T)`` pre-softmax attention of the A alignment heads, ``(B, S, V)`` logits.
    """
    heads = model.alignment_heads.coalesce().indices().T.tolist()  # [(layer, head)]
    held: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        return lambda _module, _inputs, outputs: held.__setitem__(layer, outputs[1])

    layers = sorted({layer for layer, _ in heads})
    hooks = [model.decoder.blocks[layer].cross_attn.register_forward_hook(keep(layer)) for layer in layers]
    try:
        with disable_sdpa():  # the fused kernel returns no attention weights
            logits = model.decoder(rows, features)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack([held[layer][:, head] for layer, head in heads], 1), logits


def _dtw_path(qk: torch.Tensor, n_frames: int, n_prompt: int) -> tuple[np.ndarray, np.ndarray]:
    """Token rows against audio frames for one clip, as ``find_alignment`` computes them.

    Args:
        qk: ``(A, S, T)`` attention logits of this clip's S tokens (no padding rows).
        n_frames: mel frames of speech (the rest of the window is padding).
        n_prompt: prompt length; the rows kept are those predicting each text token and the end.
    """
    w = qk[:, :, : max(1, n_frames // 2)].float().softmax(-1)
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = median_filter((w - mean) / std, MEDIAN_FILTER_WIDTH)
    return dtw(-w.mean(0)[n_prompt - 1 : -1])


def whisper_word_timings(
    model: Whisper,
    tokenizer: Tokenizer,
    features: torch.Tensor,
    texts: Sequence[Sequence[int]],
    durations: Sequence[float],
) -> list[tuple[WordTiming, ...]]:
    """Word timings for a batch decoded by openai-whisper, from one decoder pass.

    Args:
        model: the model that decoded ``texts``.
        tokenizer: its tokenizer, set to the language and task of the decoding.
        features: ``(B, T, d)`` the encoder outputs the texts were decoded from.
        texts: per clip, the decoded tokens (timestamp tokens are ignored).
        durations: per clip, seconds of audio in its window.
    """
    prompt = alignment_prompt(tokenizer)
    texts = [[t for t in toks if t < tokenizer.eot] for toks in texts]
    width = len(prompt) + max((len(t) for t in texts), default=0) + 1
    rows = [prompt + t + [tokenizer.eot] * (width - len(prompt) - len(t)) for t in texts]
    qk, logits = _cross_attention(model, features, torch.tensor(rows, device=features.device))
    probs = logits[:, len(prompt) - 1 :, : tokenizer.eot].float().softmax(-1)  # (B, S', text vocab)
    out = []
    for b, (text, duration) in enumerate(zip(texts, durations, strict=True)):
        if not text:
            out.append(())
            continue
        n_frames = min(round(duration * FRAMES_PER_S), 2 * qk.shape[-1])
        path = _dtw_path(qk[b, :, : len(prompt) + len(text) + 1], n_frames, len(prompt))
        p = probs[b, torch.arange(len(text)), torch.tensor(text, device=probs.device)].tolist()
        out.append(words_from_path(tokenizer, text, *path, p, duration))
    return out


def words_from_path(
    tokenizer: Tokenizer,
    text: Sequence[int],
    text_indices: np.ndarray,
    time_indices: np.ndarray,
    token_probs: Sequence[float],
    duration: float,
) -> tuple[WordTiming, ...]:
    """Words with times (seconds from the clip's start) from a token-to-frame alignment path.

    A word starts where the path first reaches its first token and ends where it reaches the
    next word's (the end token's, for the last word). Each word keeps whisper's spelling,
    leading space included, so the words joined give the text back; punctuation is merged
    into its neighbour as ``whisper.transcribe`` does.
    """
    words, word_tokens = tokenizer.split_to_word_tokens([*text, tokenizer.eot])
    if len(word_tokens) <= 1:
        return ()
    bounds = np.cumsum([0] + [len(t) for t in word_tokens[:-1]])  # first token of each word, then the end
    first_step = np.flatnonzero(np.diff(np.asarray(text_indices), prepend=-1))
    row_times = np.asarray(time_indices)[first_step] / TOKENS_PER_SECOND
    aligned = [
        _Aligned(
            word, list(tokens), float(row_times[i]), float(row_times[j]), float(np.mean(token_probs[i:j]))
        )
        for word, tokens, i, j in zip(words, word_tokens, bounds[:-1], bounds[1:], strict=False)
    ]
    _trim_long_words(aligned)
    merge_punctuations(aligned, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
    return tuple(
        WordTiming(
            a.word,
            round(min(max(a.start, 0.0), duration), 2),
            round(min(max(a.end, a.start, 0.0), duration), 2),
            round(min(max(a.probability, 0.0), 1.0), 4),
        )
        for a in aligned
        if a.word
    )


def _trim_long_words(aligned: list[_Aligned]) -> None:
    """Shorten words the path stretched over a pause, as ``whisper.transcribe`` does.

    Every path starts at 0 s, so a first word after silence would start there; a word next to
    a sentence end may absorb the pause too. Such words are cut to twice the median word length.
    """
    lengths = [a.end - a.start for a in aligned if a.end > a.start]
    if not lengths:
        return
    median = min(MAX_MEDIAN_WORD_S, float(np.median(lengths)))
    longest = 2 * median
    first = aligned[0]
    if first.end > 4 * median and first.end - first.start > longest:
        first.start = max(0.0, first.end - longest)
    for prev, cur in zip(aligned, aligned[1:], strict=False):
        if cur.end - cur.start > longest:
            if cur.word in SENTENCE_ENDS:
                cur.end = cur.start + longest
            elif prev.word in SENTENCE_ENDS:
                cur.start = cur.end - longest
