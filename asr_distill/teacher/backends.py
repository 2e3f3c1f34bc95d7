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
    """One decoded output before it becomes a record. Logprobs/entropies in nats, per token."""

    tokens: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    token_logprobs: tuple[float, ...]
    token_entropies: tuple[float | None, ...]


class Backend(Protocol):
    name: str
    tokenizer: Tokenizer

    def encode(self, audios: list[np.ndarray], window_s: float) -> Any: ...

    def select(self, features: Any, idx: list[int]) -> Any: ...

    def detect_language(self, features: Any) -> list[tuple[str, float | None]]: ...

    def generate(
        self, features: Any, *, language: str, task: str, temperature: float,
        beam_size: int | None, best_of: int, max_tokens: int,
    ) -> list[RawHypothesis]: ...


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
        return mel


class WhisperBackend:
    """openai-whisper in PyTorch: the reference implementation and the student's format."""

    name = "whisper"

    def __init__(self, teacher: Teacher):
        self.model = teacher.model.eval()
        self.device = next(self.model.parameters()).device
        self.tokenizer = make_tokenizer(self.model.is_multilingual, self.model.num_languages)

    @torch.no_grad()
    def encode(self, audios: list[np.ndarray], window_s: float) -> torch.Tensor:
        """Audio clips → encoder outputs ``(B, 50 * window_s, d)``.

        The positional embedding is sliced to the window, so a 10 s window costs a third
        of the 30 s one.
        """
        n_samples = int(window_s * SAMPLE_RATE)
        n_mels = self.model.dims.n_mels
        mels = torch.stack([
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a), n_samples), n_mels)
            for a in audios
        ]).to(self.device)
        enc = self.model.encoder
        x = F.gelu(enc.conv1(mels))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.positional_embedding[: x.shape[1]]
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)

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
    def generate(self, features, *, language, task, temperature, beam_size, best_of, max_tokens):
        sampling = temperature > 0
        options = DecodingOptions(
            task=task,
            language=language if self.model.is_multilingual else "en",
            temperature=temperature,
            sample_len=max_tokens,
            best_of=best_of if sampling else None,
            beam_size=None if sampling else beam_size,
            without_timestamps=True,
            fp16=False,
        )
        results = _FeaturesTask(self.model, options).run(features)
        tok = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                            language=options.language, task=task)
        prefix = list(tok.sot_sequence_including_notimestamps)
        stats = self._token_stats(features, prefix, [r.tokens for r in results])
        return [
            RawHypothesis(tuple(r.tokens), r.text.strip(), float(r.avg_logprob), float(r.no_speech_prob),
                          lp, ent)
            for r, (lp, ent) in zip(results, stats, strict=True)
        ]

    def _token_stats(self, features, prefix: list[int], outputs: list[list[int]]):
        """Teacher-forced pass: log-probability and entropy of each emitted token."""
        eot = self.tokenizer.eot
        width = len(prefix) + max((len(t) for t in outputs), default=0)
        rows = [prefix + list(t) + [eot] * (width - len(prefix) - len(t)) for t in outputs]
        tokens = torch.tensor(rows, device=self.device)
        logp = self.model.logits(tokens, features).float().log_softmax(-1)  # (B, S, V)
        entropy = -(logp.exp() * logp).sum(-1)  # (B, S)
        out = []
        for b, t in enumerate(outputs):
            pos = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(t), device=self.device)
            lp = logp[b, pos, torch.tensor(t, dtype=torch.long, device=self.device)] if t else pos.float()
            out.append((tuple(round(float(x), 4) for x in lp),
                        tuple(round(float(x), 4) for x in entropy[b, pos])))
        return out


class FasterWhisperBackend:
    """faster-whisper's CTranslate2 engine (int8 on CPU by default) behind the same interface."""

    name = "faster-whisper"

    def __init__(self, teacher: Teacher, compute_type: str = "int8", cpu_threads: int = 0):
        if teacher.ct2_dir is None:
            raise ValueError(
                f"teacher {teacher.name!r} has no CTranslate2 directory; give a CTranslate2 model "
                "(a packaged name or a folder with model.bin) or use --backend whisper"
            )
        from faster_whisper import WhisperModel
        from faster_whisper.feature_extractor import FeatureExtractor

        self._fw = WhisperModel(str(teacher.ct2_dir), device="cpu", compute_type=compute_type,
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

    def generate(self, features, *, language, task, temperature, beam_size, best_of, max_tokens):
        tok = get_tokenizer(self._multilingual, num_languages=self.model.num_languages,
                            language=language if self._multilingual else "en", task=task)
        prefix = list(tok.sot_sequence_including_notimestamps)
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
        return [self._hypothesis(r) for r in results]

    def _hypothesis(self, r) -> RawHypothesis:
        best = int(np.argmax(r.scores)) if len(r.scores) > 1 else 0
        tokens = [t for t in r.sequences_ids[best] if t < self.tokenizer.eot]
        logits = np.asarray([np.asarray(step) for step in r.logits[best]], dtype=np.float32)
        logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True) if len(logits) else logits
        lps, ents = [], []
        for i, t in enumerate(tokens[: len(logp)]):
            lps.append(round(float(logp[i, t]), 4))
            ents.append(round(float(-(np.exp(logp[i]) * logp[i]).sum()), 4))
        eot_lp = float(logp[len(tokens), self.tokenizer.eot]) if len(logp) > len(tokens) else 0.0
        avg = (sum(lps) + eot_lp) / (len(tokens) + 1)
        text = self.tokenizer.decode(tokens).strip()
        return RawHypothesis(tuple(tokens), text, avg, float(r.no_speech_prob), tuple(lps), tuple(ents))


def make_backend(teacher: Teacher, name: str = "whisper", **kwargs) -> Backend:
    """``whisper`` (PyTorch, any checkpoint) or ``faster-whisper`` (CTranslate2 teachers)."""
    if name == "whisper":
        return WhisperBackend(teacher)
    if name in ("faster-whisper", "ct2"):
        return FasterWhisperBackend(teacher, **kwargs)
    raise ValueError(f"unknown backend {name!r}: choose 'whisper' or 'faster-whisper'")
