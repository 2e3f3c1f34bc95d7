"""Decoding backends: openai-whisper (PyTorch) and faster-whisper (CTranslate2), one interface.

A backend encodes a batch of clips once and then generates from those features as
often as fallback needs (the 30 s ``transcribe`` loop re-encodes on every retry; we do
not). Both return ``RawHypothesis`` with per-token log-probabilities and entropies.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from whisper.decoding import DecodingOptions, DecodingTask
from whisper.tokenizer import Tokenizer, get_tokenizer

from ..features import FRAMES_PER_S, SAMPLE_RATE, check_features, encode_mels, log_mel_batch
from ..records import WordTiming
from .options import AUTO_BATCH, DEFAULT_BATCH_SIZE, DecodePass, check_precision
from .resolve import Teacher
from .timestamp_rules import batched


@dataclass(frozen=True)
class RawHypothesis:
    """One decoded output before it becomes a record.

    ``token_stats`` holds, per token, (logprob, gibbs, tsallis, renyi) in nats.
    ``language`` is the detector's (code, probability) read from the same forward pass,
    where the backend can (None: ask ``detect_language``). ``words`` is filled by
    ``Backend.word_timings`` after the hypothesis is chosen, when word timings are asked for.
    """

    tokens: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    token_stats: tuple[tuple[float, float, float, float], ...]
    language: tuple[str, float | None] | None = None
    words: tuple[WordTiming, ...] = ()


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AMX or AVX512-BF16): where bf16 is worth timing (``precision``)."""
    from .precision import cpu_has_bf16 as has_bf16

    return has_bf16()


def encoder_dtype(precision: str, device: torch.device, teacher: Teacher | None = None) -> torch.dtype | None:
    """The autocast dtype for the encoder, or None for float32.

    ``auto`` is measured, not read off CPU flags (bf16 is faster on some bf16 CPUs, slower on
    others): with ``teacher``, the fastest precision that agrees with float32 for its encoder
    on this machine, timed once and cached (``teacher.precision``). Without a model to time,
    float16 on CUDA (Whisper's own GPU precision) and float32 elsewhere. Only the encoder is
    cast: it is most of the compute, while the decoder's small per-token matrix products run
    slower under autocast on a CPU than in float32.
    """
    check_precision(precision)
    if precision == "auto":
        if teacher is not None:
            from .precision import auto_dtype

            return auto_dtype(teacher, device)
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def entropies(logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Gibbs, Tsallis and Renyi entropies of next-token distributions: ``(..., V)`` → ``(..., 3)``."""
    p = logp.exp()
    gibbs = -(p * logp).sum(-1)
    power_sum = (alpha * logp).exp().sum(-1)  # sum p^alpha
    tsallis = (1.0 - power_sum) / (alpha - 1.0)
    renyi = power_sum.log() / (1.0 - alpha)
    return torch.stack([gibbs, tsallis, renyi], -1)


def _rounded(lp: torch.Tensor, ent: torch.Tensor) -> list[tuple[float, ...]]:
    rows = torch.cat([lp[:, None], ent], -1).tolist()
    return [tuple(round(x, 4) for x in row) for row in rows]


def _per_clip(values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """``values`` of the running ``rows`` placed in a tensor for all ``n`` clips (zero elsewhere)."""
    full = values.new_zeros((n, *values.shape[1:]))
    full[rows] = values
    return full


def step_stats(logp: torch.Tensor, chosen: torch.Tensor, alpha: float) -> list[tuple[float, ...]]:
    """Per step: log-probability of the chosen token, and Gibbs, Tsallis, Renyi entropies.

    Args:
        logp: ``(S, V)`` log-probabilities of each step's next-token distribution.
        chosen: ``(S,)`` the token emitted at each step.
        alpha: the Tsallis/Renyi order (NeMo's confidence uses 0.33).
    """
    return _rounded(logp.gather(-1, chosen[:, None])[:, 0], entropies(logp, alpha))


class Backend(Protocol):
    """What the labeler needs from a decoding engine; features stay in the engine's own form.

    ``name`` and ``precision`` (the dtype or compute type chosen) go into each label's provenance.
    """

    name: str
    precision: str
    tokenizer: Tokenizer

    def encode(self, audios: list[np.ndarray], window_s: float) -> Any:
        """Encoder outputs ``(B, T, d)`` for clips padded or cut to ``window_s`` seconds."""
        ...

    def select(self, features: Any, idx: list[int]) -> Any:
        """The rows ``idx`` of ``features``: the clips a fallback pass decodes again."""
        ...

    def auto_batch_size(self) -> int:
        """The batch size ``auto`` means for this engine on its device."""
        ...

    def detect_language(self, features: Any) -> list[tuple[str, float | None]]:
        """``(code, probability)`` per clip; an English-only model answers ``("en", None)``."""
        ...

    def generate(self, features: Any, step: DecodePass) -> list[RawHypothesis]:
        """One hypothesis per clip, with the token statistics the confidence scores need."""
        ...

    def word_timings(
        self, features: Any, texts: list[tuple[int, ...]], durations: list[float], language: str, task: str
    ) -> list[tuple[WordTiming, ...]]:
        """Per clip, its words with start/end (seconds from the clip's start) and probability."""
        ...


def _language_codes(tokenizer: Tokenizer) -> dict[int, str]:
    return dict(zip(tokenizer.all_language_tokens, tokenizer.all_language_codes, strict=False))


def make_tokenizer(model_is_multilingual: bool, num_languages: int) -> Tokenizer:
    """The model's transcription tokenizer; its language is set per decoding call."""
    return get_tokenizer(model_is_multilingual, num_languages=num_languages, task="transcribe")


def reduced_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of a Whisper model with its weights in ``dtype``, its layer norms in float32.

    Whisper's ``LayerNorm`` normalises in float32 with its own weights (those must stay
    float32); every other floating weight and buffer (the encoder's positional embedding
    among them) is cast, so no float32 tensor pulls activations back to float32.
    """
    reduced = copy.deepcopy(model)
    for module in reduced.modules():
        if isinstance(module, torch.nn.LayerNorm):
            continue
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)
    return reduced


class _FeaturesTask(DecodingTask):
    """openai-whisper's batched ``DecodingTask`` fed with encoder outputs we computed.

    Our features may come from a shortened encoder context, which the stock task would
    mistake for a mel spectrogram and encode again. The task also keeps what its forward
    passes already computed and a record needs: the distribution at the start-of-transcript
    position (the language detector's, so detection costs nothing extra) and, when it
    decodes one row per clip (greedy), each step's token statistics, so no second
    teacher-forced pass is needed.
    """

    def __init__(self, model, options: DecodingOptions, entropy_alpha: float):
        super().__init__(model, options)
        self.logit_filters = batched(self.logit_filters)  # whisper's timestamp rules loop per row
        self.alpha = entropy_alpha
        self.sot_logits: torch.Tensor | None = None
        self.chosen_lp: list[torch.Tensor] = []  # per step (B,): log-probability of the emitted token
        self.step_entropies: list[torch.Tensor] = []  # per step (B, 3)

    def _get_audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        # Beam search and best-of-n run n_group rows per clip; openai-whisper repeats the
        # tokens but not the features (its open bug with batches > 1), so repeat them here.
        # ``run`` takes every n_group-th row back after the loop.
        return mel.repeat_interleave(self.n_group, 0) if self.n_group > 1 else mel

    def _detect_language(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        return super()._detect_language(audio_features[:: self.n_group], tokens)

    @property
    def tracks_steps(self) -> bool:
        """Whether the loop's own steps give the token statistics (one row per clip: greedy)."""
        return self.n_group == 1

    def _main_loop(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        if self.tracks_steps:
            return self._greedy_loop(audio_features, tokens)
        forward = self.inference.logits

        def logits(tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
            out = forward(tokens, audio_features)
            if self.sot_logits is None:
                self.sot_logits = out[:, self.sot_index].float()
            return out

        self.inference.logits = logits
        try:
            return super()._main_loop(audio_features, tokens)
        finally:
            del self.inference.logits  # the instance attribute; the class method shows again

    def _greedy_loop(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        """openai-whisper's ``_main_loop`` for one row per clip, computing only unfinished rows.

        In Whisper's loop a row that has ended keeps its place in the batch until the last
        row ends, appending end tokens at full cost: its share of the cross-attention cache
        (the window's frames, every layer) is read at each step. Here a row leaves the
        batch and the cache when it ends; its tokens are padded with the end token as
        Whisper's greedy decoder pads them. A sampling pass (temperature above 0) keeps every
        row, so each clip draws the same random numbers as in Whisper's loop. Each step's
        statistics (the emitted token's log-probability under the unfiltered distribution, and
        the entropies) are kept per clip, zero for rows already ended.
        """
        n, device, eot = tokens.shape[0], audio_features.device, self.tokenizer.eot
        sum_logprobs = torch.zeros(n, device=device)
        no_speech: list[float] = [float("nan")] * n
        alive = torch.arange(n, device=device)  # the clip each running row belongs to
        out, prune = tokens, self.options.temperature == 0
        try:
            for i in range(self.sample_len):
                logits = self.inference.logits(tokens, audio_features)
                if i == 0:
                    self.sot_logits = logits[:, self.sot_index].float()
                    if self.tokenizer.no_speech is not None:
                        no_speech = self.sot_logits.softmax(-1)[:, self.tokenizer.no_speech].tolist()
                logits = logits[:, -1]
                logp = logits.float().log_softmax(-1)  # before the filters change ``logits`` in place
                self.step_entropies.append(_per_clip(entropies(logp, self.alpha), alive, n))
                for logit_filter in self.logit_filters:
                    logit_filter.apply(logits, tokens)
                running = sum_logprobs[alive]
                tokens, completed = self.decoder.update(tokens, logits, running)
                sum_logprobs[alive] = running
                self.chosen_lp.append(_per_clip(logp.gather(-1, tokens[:, -1:])[:, 0], alive, n))
                step = torch.full((n, 1), eot, dtype=out.dtype, device=device)
                step[alive] = tokens[:, -1:]
                out = torch.cat([out, step], -1)
                if completed or tokens.shape[-1] > self.n_ctx:
                    break
                if prune:
                    alive, tokens, audio_features = self._drop_ended(alive, tokens, audio_features)
        finally:
            self.inference.cleanup_caching()
        return out, sum_logprobs, no_speech

    def _drop_ended(self, alive: torch.Tensor, tokens: torch.Tensor, audio_features: torch.Tensor):
        """The rows still decoding, out of ``alive``, ``tokens``, the features and the cache."""
        running = (tokens[:, -1] != self.tokenizer.eot).nonzero()[:, 0]
        if len(running) == len(alive):
            return alive, tokens, audio_features
        cache = self.inference.kv_cache
        for module, cached in cache.items():
            cache[module] = cached[running]
        return alive[running], tokens[running], audio_features[running]

    def row_stats(self, lengths: list[int]) -> list[list[tuple[float, ...]] | None]:
        """Per clip with ``lengths[b]`` tokens: the statistics of its tokens and its end token.

        None where the loop cannot give them (several rows per clip, or a row stopped at the
        length cap before its end token): those are scored by teacher forcing.
        """
        if not self.tracks_steps or not self.chosen_lp:
            return [None] * len(lengths)
        lp = torch.stack(self.chosen_lp, 1)  # (B, S)
        ent = torch.stack(self.step_entropies[: lp.shape[1]], 1)  # (B, S, 3)
        return [
            _rounded(lp[b, : n + 1], ent[b, : n + 1]) if n + 1 <= lp.shape[1] else None
            for b, n in enumerate(lengths)
        ]


class WhisperBackend:
    """openai-whisper in PyTorch: the reference implementation and the student's format.

    ``precision`` sets the encoder's autocast dtype (see ``encoder_dtype``); ``self.precision``
    names what was chosen, for provenance.
    """

    name = "whisper"

    def __init__(self, teacher: Teacher, precision: str = "auto"):
        model = teacher.model.eval()
        self.device = next(model.parameters()).device
        self.tokenizer = make_tokenizer(model.is_multilingual, model.num_languages)
        self._dtype = encoder_dtype(precision, self.device, teacher)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self._dtype]
        # An explicit ``fp16``/``bf16`` on a GPU runs the decoder in that dtype too, from a
        # copy (the teacher's float32 weights serve other backends). ``auto`` casts only the
        # encoder, as on a CPU: the per-token decoding loop is bound by kernel launches, and a
        # float16 decoder adds a cast around every layer norm (on an H200 at batch 256: 419
        # RTFx with both in float16, 1,225 with the decoder in float32; label_throughput_gpu).
        self.decodes_reduced = (
            precision in ("fp16", "bf16") and self._dtype is not None and self.device.type == "cuda"
        )
        self.model = reduced_copy(model, self._dtype) if self.decodes_reduced else model

    def auto_batch_size(self) -> int:
        """``batch_size="auto"``: as many clips as the free GPU memory holds, 8 on a CPU."""
        from .batching import resolve_batch_size

        return resolve_batch_size(AUTO_BATCH, self.model, self._dtype if self.decodes_reduced else None)

    @torch.no_grad()
    def encode(self, audios: list[np.ndarray], window_s: float) -> torch.Tensor:
        """Encoder outputs ``(B, T, d)`` in the decoder's dtype, encoded in the chosen dtype.

        The log-mel features are computed on the model's device (a GPU computes a batch of
        them in milliseconds, where a CPU would keep it waiting).
        """
        mels = log_mel_batch(audios, window_s, self.model.dims.n_mels, self.device)
        check_features(audios, mels)  # one absurd clip must not turn the batch into NaN
        if self.decodes_reduced:
            return encode_mels(self.model, mels.to(self._dtype))
        cast = (
            torch.autocast(self.device.type, dtype=self._dtype)
            if self._dtype is not None
            else contextlib.nullcontext()
        )
        with cast:
            features = encode_mels(self.model, mels)
        return features.float()

    def select(self, features: torch.Tensor, idx: list[int]) -> torch.Tensor:
        """The rows ``idx`` of ``features`` ``(B, T, d)``."""
        return features[idx]

    @torch.no_grad()
    def detect_language(self, features: torch.Tensor) -> list[tuple[str, float | None]]:
        """``(code, probability)`` per clip, from one decoder step at the start-of-transcript token."""
        if not self.model.is_multilingual:
            return [("en", None)] * features.shape[0]
        sot = torch.full((features.shape[0], 1), self.tokenizer.sot, device=self.device)
        return self._languages(self.model.logits(sot, features)[:, 0])

    def _languages(self, sot_logits: torch.Tensor) -> list[tuple[str, float | None]]:
        """The language detector's answer from the logits at the start-of-transcript position."""
        if not self.model.is_multilingual:
            return [("en", None)] * sot_logits.shape[0]
        codes = _language_codes(self.tokenizer)
        keep = torch.tensor(list(codes), device=sot_logits.device)
        probs = sot_logits[:, keep].float().softmax(-1)
        best = probs.argmax(-1)
        return [(codes[int(keep[b])], float(probs[i, b])) for i, b in enumerate(best)]

    @torch.no_grad()
    def generate(self, features, step: DecodePass):
        """Batched decoding with openai-whisper's ``DecodingTask`` on our features.

        Clips whose statistics the loop could not track are scored again by teacher forcing.
        """
        language, task, temperature, max_tokens = step.language, step.task, step.temperature, step.max_tokens
        sampling = temperature > 0
        options = DecodingOptions(
            task=task,
            language=language if self.model.is_multilingual else "en",
            temperature=temperature,
            sample_len=max_tokens,
            best_of=step.best_of if sampling else None,
            beam_size=None if sampling else step.beam_size,
            without_timestamps=not step.timestamps,
            fp16=False,
        )
        run = _FeaturesTask(self.model, options, step.entropy_alpha)
        results = run.run(features)
        langs = self._languages(run.sot_logits[:: run.n_group])
        tok = get_tokenizer(
            self.model.is_multilingual,
            num_languages=self.model.num_languages,
            language=options.language,
            task=task,
        )
        prefix = list(tok.sot_sequence if step.timestamps else tok.sot_sequence_including_notimestamps)
        tracked = run.row_stats([len(r.tokens) for r in results])
        forced = [b for b, st in enumerate(tracked) if st is None]
        scored = iter(
            self._token_stats(
                features[forced], prefix, [results[b].tokens for b in forced], step.entropy_alpha
            )
            if forced
            else []
        )
        hyps = []
        for r, st, lang in zip(results, tracked, langs, strict=True):
            stats, avg = self._summary(r.tokens, st) if st is not None else next(scored)
            hyps.append(
                RawHypothesis(tuple(r.tokens), r.text.strip(), avg, float(r.no_speech_prob), stats, lang)
            )
        return hyps

    def _summary(self, tokens: list[int], stats: list[tuple[float, ...]]):
        """Token statistics (without the end token's) and the average log-probability.

        The average covers text tokens and the end token, not timestamp tokens: in timestamp
        mode those are uncertain about *when* (often below -1 on their own), which would send
        correct transcripts into temperature fallback. It then means the same in both modes
        and in both backends.
        """
        chosen = [*tokens, self.tokenizer.eot]
        text_lp = [s[0] for t, s in zip(chosen, stats, strict=True) if t < self.tokenizer.timestamp_begin]
        return tuple(stats[:-1]), sum(text_lp) / len(text_lp)

    def _token_stats(self, features, prefix: list[int], outputs: list[list[int]], alpha: float):
        """Teacher-forced pass over emitted tokens, for rows the decoding loop could not score.

        Beam search and best-of-n reorder or rank rows, and a row cut at the length cap has no
        end-token step: these are scored here, by one pass over the whole sequence.
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
            out.append(self._summary(t, step_stats(logp[b, start : start + len(t) + 1], chosen, alpha)))
        return out

    def word_timings(self, features, texts, durations, language, task):
        """One teacher-forced decoder pass over the batch, aligned by the model's alignment heads."""
        from .words import whisper_word_timings

        tok = get_tokenizer(
            self.model.is_multilingual,
            num_languages=self.model.num_languages,
            language=language if self.model.is_multilingual else "en",
            task=task,
        )
        return whisper_word_timings(self.model, tok, features, texts, durations)


class FasterWhisperBackend:
    """faster-whisper's CTranslate2 engine (int8 on CPU by default) behind the same interface."""

    name = "faster-whisper"

    def __init__(
        self,
        teacher: Teacher,
        compute_type: str | None = None,
        cpu_threads: int | None = None,
        device: str = "cpu",
    ):
        """``compute_type`` defaults to int8 on CPU and float16 on CUDA.

        ``cpu_threads`` defaults to torch's thread count: CTranslate2's own default (4) over-
        subscribes a 2-core machine.
        """
        if teacher.ct2_dir is None:
            raise ValueError(
                f"teacher {teacher.name!r} has no CTranslate2 directory; give a CTranslate2 model "
                "(a packaged name or a folder with model.bin) or use --backend whisper"
            )
        from faster_whisper import WhisperModel
        from faster_whisper.feature_extractor import FeatureExtractor

        kind, _, index = str(device).partition(":")
        self.precision = compute_type or ("int8" if kind == "cpu" else "float16")
        threads = torch.get_num_threads() if cpu_threads is None else cpu_threads
        self._fw = WhisperModel(
            str(teacher.ct2_dir),
            device=kind,
            device_index=int(index or 0),
            compute_type=self.precision,
            cpu_threads=threads,
        )
        self.model = self._fw.model
        self.n_mels = self.model.n_mels
        self._features = FeatureExtractor(feature_size=self.n_mels)
        multilingual = self.model.is_multilingual
        self.tokenizer = make_tokenizer(multilingual, self.model.num_languages)
        self._multilingual = multilingual

    def auto_batch_size(self) -> int:
        """8 clips: CTranslate2 manages its own memory, and this size is measured on a CPU."""
        return DEFAULT_BATCH_SIZE

    def encode(self, audios: list[np.ndarray], window_s: float):
        """Encoder outputs ``(B, T, d)`` as a CTranslate2 ``StorageView`` on the CPU."""
        import ctranslate2

        n_frames = int(window_s * FRAMES_PER_S)
        n_samples = int(window_s * SAMPLE_RATE)
        with np.errstate(over="ignore", invalid="ignore"):  # check_features names such clips
            mels = np.stack(
                [
                    self._features(np.pad(a[:n_samples], (0, max(0, n_samples - len(a)))), padding=0)[
                        :, :n_frames
                    ]
                    for a in audios
                ]
            ).astype(np.float32)
        check_features(audios, mels)
        return self.model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True)

    def select(self, features, idx: list[int]):
        """The rows ``idx`` of ``features``, as a new ``StorageView``."""
        import ctranslate2

        return ctranslate2.StorageView.from_array(np.asarray(features)[idx])

    def detect_language(self, features) -> list[tuple[str, float | None]]:
        """``(code, probability)`` per clip, from CTranslate2's detector."""
        n = np.asarray(features).shape[0]
        if not self._multilingual:
            return [("en", None)] * n
        results = self.model.detect_language(features)
        return [(r[0][0][2:-2], float(r[0][1])) for r in results]

    def generate(self, features, step: DecodePass):
        """Batched decoding with CTranslate2; the token statistics come from its returned logits."""
        language, task, temperature, max_tokens = step.language, step.task, step.temperature, step.max_tokens
        tok = get_tokenizer(
            self._multilingual,
            num_languages=self.model.num_languages,
            language=language if self._multilingual else "en",
            task=task,
        )
        # CTranslate2 applies Whisper's timestamp rules itself when the prompt lacks <|notimestamps|>
        prefix = list(tok.sot_sequence if step.timestamps else tok.sot_sequence_including_notimestamps)
        n = np.asarray(features).shape[0]
        sampling = temperature > 0
        results = self.model.generate(
            features,
            [prefix] * n,
            beam_size=1 if sampling else (step.beam_size or 1),
            num_hypotheses=step.best_of if sampling else 1,
            sampling_topk=0 if sampling else 1,
            sampling_temperature=temperature if sampling else 1.0,
            max_length=len(prefix) + max_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            return_logits_vocab=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return [self._hypothesis(r, step.entropy_alpha) for r in results]

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

    def word_timings(self, features, texts, durations, language, task):
        """CTranslate2's batched ``align`` (the teacher's ``alignment_heads`` from its config.json)."""
        from .words import MEDIAN_FILTER_WIDTH, words_from_path

        tok = get_tokenizer(
            self._multilingual,
            num_languages=self.model.num_languages,
            language=language if self._multilingual else "en",
            task=task,
        )
        texts = [[t for t in toks if t < tok.eot] for toks in texts]
        todo = [i for i, t in enumerate(texts) if t]  # CTranslate2 cannot align an empty text
        out: list[tuple[WordTiming, ...]] = [()] * len(texts)
        if not todo:
            return out
        n_frames = 2 * np.asarray(features).shape[1]
        found = self.model.align(
            features if len(todo) == len(texts) else self.select(features, todo),
            list(tok.sot_sequence),
            [texts[i] for i in todo],
            [min(round(durations[i] * FRAMES_PER_S), n_frames) for i in todo],
            median_filter_width=MEDIAN_FILTER_WIDTH,
        )
        for i, r in zip(todo, found, strict=True):
            path = np.asarray(r.alignments, dtype=np.int64).reshape(-1, 2).T
            out[i] = words_from_path(tok, texts[i], path[0], path[1], r.text_token_probs, durations[i])
        return out


def make_backend(
    teacher: Teacher, name: str = "whisper", precision: str = "auto", device: str = "cpu"
) -> Backend:
    """``whisper`` (PyTorch, any checkpoint) or ``faster-whisper`` (CTranslate2 teachers).

    ``precision`` (``teacher.options.PRECISIONS``): the PyTorch encoder's dtype, or
    CTranslate2's compute type (``auto``: int8 on CPU, float16 on CUDA). ``device`` places
    the CTranslate2 engine; the PyTorch backend runs where the teacher's model already is.
    """
    if name == "whisper":
        return WhisperBackend(teacher, precision)
    if name in ("faster-whisper", "ct2"):
        check_precision(precision)
        compute = {"auto": None, "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
        return FasterWhisperBackend(teacher, compute_type=compute, device=device)
    raise ValueError(f"unknown backend {name!r}: choose 'whisper' or 'faster-whisper'")
