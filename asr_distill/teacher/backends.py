"""Decoding backends: openai-whisper (PyTorch) and faster-whisper (CTranslate2), one interface.

A backend encodes a batch of clips once and then generates from those features as
often as fallback needs (the 30 s ``transcribe`` loop re-encodes on every retry; we do
not). Both return ``RawHypothesis`` with per-token log-probabilities and entropies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from whisper.decoding import DecodingOptions, DecodingTask
from whisper.tokenizer import Tokenizer, get_tokenizer

from .resolve import Teacher

SAMPLE_RATE = whisper.audio.SAMPLE_RATE
FRAMES_PER_S = SAMPLE_RATE // whisper.audio.HOP_LENGTH  # mel frames per second (100)


@dataclass(frozen=True)
class RawHypothesis:
    """One decoded output before it becomes a record.

    ``token_stats`` holds, per token, (logprob, gibbs, tsallis, renyi) in nats.
    """

    tokens: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    token_stats: tuple[tuple[float, float, float, float], ...]


def step_stats(logp: torch.Tensor, chosen: torch.Tensor, alpha: float) -> list[tuple[float, ...]]:
    """Per step: log-probability of the chosen token, and Gibbs, Tsallis, Renyi entropies.

    Args:
        logp: ``(S, V)`` log-probabilities of each step's next-token distribution.
        chosen: ``(S,)`` the token emitted at each step.
        alpha: the Tsallis/Renyi order (NeMo's confidence uses 0.33).
    """
    p = logp.exp()
    gibbs = -(p * logp).sum(-1)
    power_sum = (alpha * logp).exp().sum(-1)  # sum p^alpha
    tsallis = (1.0 - power_sum) / (alpha - 1.0)
    renyi = power_sum.log() / (1.0 - alpha)
    lp = logp.gather(-1, chosen[:, None])[:, 0]
    rows = torch.stack([lp, gibbs, tsallis, renyi], -1).tolist()
    return [tuple(round(x, 4) for x in row) for row in rows]


class Backend(Protocol):
    name: str
    tokenizer: Tokenizer

    def encode(self, audios: list[np.ndarray], window_s: float) -> Any: ...

    def select(self, features: Any, idx: list[int]) -> Any: ...

    def detect_language(self, features: Any) -> list[tuple[str, float | None]]: ...

    def generate(
        self, features: Any, *, language: str, task: str, temperature: float,
        beam_size: int | None, best_of: int, max_tokens: int, entropy_alpha: float, timestamps: bool,
    ) -> list[RawHypothesis]: ...


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


def _language_codes(tokenizer: Tokenizer) -> dict[int, str]:
    return dict(zip(tokenizer.all_language_tokens, tokenizer.all_language_codes, strict=False))


def make_tokenizer(model_is_multilingual: bool, num_languages: int) -> Tokenizer:
    return get_tokenizer(model_is_multilingual, num_languages=num_languages, task="transcribe")


class _FeaturesTask(DecodingTask):
    """openai-whisper's batched ``DecodingTask`` fed with encoder outputs we computed.

    Our features may come from a shortened encoder context, which the stock task would
    mistake for a mel spectrogram and encode again.
    """

    def _get_audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        # Beam search and best-of-n run n_group rows per clip; openai-whisper repeats the
        # tokens but not the features (its open bug with batches > 1), so repeat them here.
        # ``run`` takes every n_group-th row back after the loop.
        return mel.repeat_interleave(self.n_group, 0) if self.n_group > 1 else mel

    def _detect_language(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        return super()._detect_language(audio_features[:: self.n_group], tokens)


class WhisperBackend:
    """openai-whisper in PyTorch: the reference implementation and the student's format."""

    name = "whisper"

    def __init__(self, teacher: Teacher):
        self.model = teacher.model.eval()
        self.device = next(self.model.parameters()).device
        self.tokenizer = make_tokenizer(self.model.is_multilingual, self.model.num_languages)

    @torch.no_grad()
    def encode(self, audios: list[np.ndarray], window_s: float) -> torch.Tensor:
        mels = log_mel_batch(audios, window_s, self.model.dims.n_mels).to(self.device)
        return encode_mels(self.model, mels)

    def select(self, features: torch.Tensor, idx: list[int]) -> torch.Tensor:
        return features[idx]

    @torch.no_grad()
    def detect_language(self, features: torch.Tensor) -> list[tuple[str, float | None]]:
        if not self.model.is_multilingual:
            return [("en", None)] * features.shape[0]
        codes = _language_codes(self.tokenizer)
        sot = torch.full((features.shape[0], 1), self.tokenizer.sot, device=self.device)
        logits = self.model.logits(sot, features)[:, 0]
        keep = torch.tensor(list(codes), device=self.device)
        probs = logits[:, keep].float().softmax(-1)
        best = probs.argmax(-1)
        return [(codes[int(keep[b])], float(probs[i, b])) for i, b in enumerate(best)]

    @torch.no_grad()
    def generate(self, features, *, language, task, temperature, beam_size, best_of, max_tokens,
                 entropy_alpha, timestamps=True):
        sampling = temperature > 0
        options = DecodingOptions(
            task=task,
            language=language if self.model.is_multilingual else "en",
            temperature=temperature,
            sample_len=max_tokens,
            best_of=best_of if sampling else None,
            beam_size=None if sampling else beam_size,
            without_timestamps=not timestamps,
            fp16=False,
        )
        results = _FeaturesTask(self.model, options).run(features)
        tok = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                            language=options.language, task=task)
        prefix = list(tok.sot_sequence if timestamps else tok.sot_sequence_including_notimestamps)
        scored = self._token_stats(features, prefix, [r.tokens for r in results], entropy_alpha)
        return [
            RawHypothesis(tuple(r.tokens), r.text.strip(), avg, float(r.no_speech_prob), st)
            for r, (st, avg) in zip(results, scored, strict=True)
        ]

    def _token_stats(self, features, prefix: list[int], outputs: list[list[int]], alpha: float):
        """Teacher-forced pass over the emitted tokens: per-token stats and the average log-probability.

        The average covers text tokens and the end token, not timestamp tokens: in timestamp
        mode those are uncertain about *when* (often below -1 on their own), which would send
        correct transcripts into temperature fallback. It then means the same in both modes
        and in both backends.
        """
        eot = self.tokenizer.eot
        width = len(prefix) + max((len(t) for t in outputs), default=0) + 1
        rows = [prefix + list(t) + [eot] * (width - len(prefix) - len(t)) for t in outputs]
        tokens = torch.tensor(rows, device=self.device)
        logp = self.model.logits(tokens, features).float().log_softmax(-1)  # (B, S, V)
        out = []
        for b, t in enumerate(outputs):
            start = len(prefix) - 1
            chosen = torch.tensor([*t, eot], dtype=torch.long, device=self.device)
            stats = step_stats(logp[b, start: start + len(t) + 1], chosen, alpha)
            text_lp = [s[0] for tok_id, s in zip(chosen.tolist(), stats, strict=True)
                       if tok_id < self.tokenizer.timestamp_begin]
            out.append((tuple(stats[:-1]), sum(text_lp) / len(text_lp)))
        return out


class FasterWhisperBackend:
    """faster-whisper's CTranslate2 engine (int8 on CPU by default) behind the same interface."""

    name = "faster-whisper"

    def __init__(self, teacher: Teacher, compute_type: str | None = None, cpu_threads: int = 0,
                 device: str = "cpu"):
        """``compute_type`` defaults to int8 on CPU and float16 on CUDA."""
        if teacher.ct2_dir is None:
            raise ValueError(
                f"teacher {teacher.name!r} has no CTranslate2 directory; give a CTranslate2 model "
                "(a packaged name or a folder with model.bin) or use --backend whisper"
            )
        from faster_whisper import WhisperModel
        from faster_whisper.feature_extractor import FeatureExtractor

        kind, _, index = str(device).partition(":")
        self._fw = WhisperModel(str(teacher.ct2_dir), device=kind, device_index=int(index or 0),
                                compute_type=compute_type or ("int8" if kind == "cpu" else "float16"),
                                cpu_threads=cpu_threads)
        self.model = self._fw.model
        self.n_mels = self.model.n_mels
        self._features = FeatureExtractor(feature_size=self.n_mels)
        multilingual = self.model.is_multilingual
        self.tokenizer = make_tokenizer(multilingual, self.model.num_languages)
        self._multilingual = multilingual

    def encode(self, audios: list[np.ndarray], window_s: float):
        import ctranslate2

        n_frames = int(window_s * FRAMES_PER_S)
        n_samples = int(window_s * SAMPLE_RATE)
        mels = np.stack([
            self._features(np.pad(a[:n_samples], (0, max(0, n_samples - len(a)))), padding=0)[:, :n_frames]
            for a in audios
        ]).astype(np.float32)
        return self.model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True)

    def select(self, features, idx: list[int]):
        import ctranslate2

        return ctranslate2.StorageView.from_array(np.asarray(features)[idx])

    def detect_language(self, features) -> list[tuple[str, float | None]]:
        n = np.asarray(features).shape[0]
        if not self._multilingual:
            return [("en", None)] * n
        results = self.model.detect_language(features)
        return [(r[0][0][2:-2], float(r[0][1])) for r in results]

    def generate(self, features, *, language, task, temperature, beam_size, best_of, max_tokens,
                 entropy_alpha, timestamps=True):
        tok = get_tokenizer(self._multilingual, num_languages=self.model.num_languages,
                            language=language if self._multilingual else "en", task=task)
        # CTranslate2 applies Whisper's timestamp rules itself when the prompt lacks <|notimestamps|>
        prefix = list(tok.sot_sequence if timestamps else tok.sot_sequence_including_notimestamps)
        n = np.asarray(features).shape[0]
        sampling = temperature > 0
        results = self.model.generate(
            features, [prefix] * n,
            beam_size=1 if sampling else (beam_size or 1),
            num_hypotheses=best_of if sampling else 1,
            sampling_topk=0 if sampling else 1,
            sampling_temperature=temperature if sampling else 1.0,
            max_length=len(prefix) + max_tokens,
            return_scores=True, return_no_speech_prob=True, return_logits_vocab=True,
            suppress_blank=True, suppress_tokens=[-1],
        )
        return [self._hypothesis(r, entropy_alpha) for r in results]

    def _hypothesis(self, r, alpha: float) -> RawHypothesis:
        best = int(np.argmax(r.scores)) if len(r.scores) > 1 else 0
        eot = self.tokenizer.eot
        tokens = [t for t in r.sequences_ids[best] if t != eot]  # text and timestamp tokens
        steps = [np.asarray(step, dtype=np.float32) for step in r.logits[best]]
        logp = torch.from_numpy(np.stack(steps)).log_softmax(-1) if steps else torch.zeros(0, 1)
        n = min(len(tokens), len(logp))
        stats = step_stats(logp[:n], torch.tensor(tokens[:n], dtype=torch.long), alpha) if n else []
        eot_lp = float(logp[len(tokens), eot]) if len(logp) > len(tokens) else 0.0
        text_lp = [s[0] for t, s in zip(tokens, stats, strict=False) if t < eot]  # as WhisperBackend
        avg = (sum(text_lp) + eot_lp) / (len(text_lp) + 1)
        text = self.tokenizer.decode([t for t in tokens if t < eot]).strip()
        return RawHypothesis(tuple(tokens[:n]), text, avg, float(r.no_speech_prob), tuple(stats))


def make_backend(teacher: Teacher, name: str = "whisper", **kwargs) -> Backend:
    """``whisper`` (PyTorch, any checkpoint) or ``faster-whisper`` (CTranslate2 teachers)."""
    if name == "whisper":
        return WhisperBackend(teacher)
    if name in ("faster-whisper", "ct2"):
        return FasterWhisperBackend(teacher, **kwargs)
    raise ValueError(f"unknown backend {name!r}: choose 'whisper' or 'faster-whisper'")
