"""Export a student to ONNX (encoder + decoder with a key/value cache) and decode it with ONNX Runtime.

The export folder holds:

* ``encoder.onnx``: ``mel (B, n_mels, 2T)`` → ``cross_k, cross_v (L, B, T, d)``. The encoder
  runs at any window up to 30 s (positional embedding sliced, as ``features.encode_mels``
  does), then every decoder layer's cross-attention keys and values are computed here, once
  per clip, instead of at every decoding step.
* ``decoder.onnx``: ``tokens (B, S)``, ``self_k, self_v (L, B, P, d)`` (the self-attention
  cache of the ``P`` tokens already decoded; ``P = 0`` at the start), ``cross_k``, ``cross_v``
  → ``logits (B, S, V)`` and the cache grown to ``P + S``. ``P`` is the position offset.
* ``config.json``: the format name and version, the model's dimensions and tokenizer;
  ``asr_distill.json``: the student's self-description (as in a CTranslate2 export).

:class:`OnnxBackend` decodes the files with ``onnxruntime`` behind the labeler's backend
interface, so ``decode_batch`` runs it exactly as it runs the PyTorch student: same log-mel
features, same window policy and 30 s retry, and openai-whisper's own logit filters (blank
and non-speech suppression, timestamp rules) around a greedy loop.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from whisper.audio import CHUNK_LENGTH
from whisper.decoding import ApplyTimestampRules, SuppressBlank, SuppressTokens
from whisper.model import ModelDimensions, Whisper, disable_sdpa
from whisper.tokenizer import Tokenizer, get_tokenizer

from ..features import check_features, encode_mels, log_mel_batch
from ..jsonl import atomic_write_text
from ..teacher import Teacher
from ..teacher.backends import RawHypothesis, entropies, make_tokenizer
from ..teacher.options import DEFAULT_BATCH_SIZE, DecodePass
from ..teacher.timestamp_rules import BatchedTimestampRules

FORMAT = "asr_distill.onnx_whisper"
FORMAT_VERSION = 1
OPSET = 17
FILES = ("encoder.onnx", "decoder.onnx", "config.json", "asr_distill.json")
EXTRA = "pip install 'asr_distill[onnx]'"
MAX_INITIAL_TIMESTAMP_S = 1.0  # openai-whisper's DecodingOptions default


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_head: int, mask=None) -> torch.Tensor:
    """openai-whisper's attention, written out: ``(B, S, d)`` queries over ``(B, T, d)`` keys/values."""
    scale = (q.shape[-1] // n_head) ** -0.25
    q = q.unflatten(-1, (n_head, -1)).transpose(1, 2) * scale  # (B, H, S, d/H)
    k = k.unflatten(-1, (n_head, -1)).permute(0, 2, 3, 1) * scale  # (B, H, d/H, T)
    v = v.unflatten(-1, (n_head, -1)).transpose(1, 2)
    w = q @ k
    if mask is not None:
        w = w + mask
    return (w.float().softmax(-1) @ v).transpose(1, 2).flatten(2)


class _Encoder(nn.Module):
    """Log-mel → every decoder layer's cross-attention keys and values ``(L, B, T, d)``."""

    def __init__(self, model: Whisper):
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor):
        x = encode_mels(self.model, mel)
        blocks = self.model.decoder.blocks
        return (
            torch.stack([b.cross_attn.key(x) for b in blocks]),
            torch.stack([b.cross_attn.value(x) for b in blocks]),
        )


class _Decoder(nn.Module):
    """openai-whisper's ``TextDecoder`` with its self-attention cache as inputs and outputs."""

    def __init__(self, model: Whisper):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens, self_k, self_v, cross_k, cross_v):
        dec = self.decoder
        past, n = self_k.shape[2], tokens.shape[1]
        # The embedding read through one transposed view for both the lookup and the output
        # projection: the exporter folds the transpose into a single stored matrix (a lookup
        # on the plain weight would store the largest matrix twice).
        table = dec.token_embedding.weight.T  # (d, V)
        embedded = table.index_select(1, tokens.flatten()).T.unflatten(0, (-1, n))
        x = embedded + dec.positional_embedding[past : past + n]
        later = torch.arange(past + n)[None, :] > (torch.arange(n) + past)[:, None]
        mask = torch.zeros(later.shape).masked_fill(later, -math.inf)  # (S, P + S): causal
        keys, values = [], []
        for i, block in enumerate(dec.blocks):
            h = block.attn_ln(x)
            keys.append(torch.cat([self_k[i], block.attn.key(h)], 1))
            values.append(torch.cat([self_v[i], block.attn.value(h)], 1))
            a = _attention(block.attn.query(h), keys[-1], values[-1], block.attn.n_head, mask)
            x = x + block.attn.out(a)
            h = block.cross_attn_ln(x)
            a = _attention(block.cross_attn.query(h), cross_k[i], cross_v[i], block.cross_attn.n_head)
            x = x + block.cross_attn.out(a)
            x = x + block.mlp(block.mlp_ln(x))
        return dec.ln(x) @ table, torch.stack(keys), torch.stack(values)


def _export_graph(module: nn.Module, args: tuple, path: Path, names: tuple, axes: dict) -> None:
    """One ``torch.onnx.export`` (TorchScript exporter: no extra dependency), written atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with torch.no_grad(), disable_sdpa():
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=list(names[0]),
            output_names=list(names[1]),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)


def export_onnx(model: Whisper, out_dir: str | os.PathLike, description: dict[str, Any]) -> Path:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``config.json`` and ``asr_distill.json`` (float32).

    float32, so the export decodes as the PyTorch student does (within rounding).

    Args:
        model: the student (any openai-whisper model).
        out_dir: the folder to create; each file inside is replaced atomically.
        description: the self-description, written to ``asr_distill.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    dims = model.dims
    mel = torch.zeros(1, dims.n_mels, 200)  # a 2 s window; every length up to 30 s works
    batch, layers = {1: "batch"}, {1: "batch", 2: "frames"}
    _export_graph(
        _Encoder(model),
        (mel,),
        out / "encoder.onnx",
        (("mel",), ("cross_k", "cross_v")),
        {"mel": {0: "batch", 2: "mel_frames"}, "cross_k": layers, "cross_v": layers},
    )
    with torch.no_grad():
        cross = _Encoder(model)(mel)
    past = torch.zeros(dims.n_text_layer, 1, 2, dims.n_text_state)
    seq = {0: "batch", 1: "tokens"}
    cache_in, cache_out = batch | {2: "past"}, batch | {2: "total"}
    _export_graph(
        _Decoder(model),
        (torch.zeros(1, 3, dtype=torch.long), past, past, *cross),
        out / "decoder.onnx",
        (("tokens", "self_k", "self_v", "cross_k", "cross_v"), ("logits", "new_self_k", "new_self_v")),
        {"tokens": seq, "self_k": cache_in, "self_v": cache_in, "cross_k": layers, "cross_v": layers}
        | {"logits": seq, "new_self_k": cache_out, "new_self_v": cache_out},
    )
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dims": asdict(dims),
        "tokenizer": {"multilingual": model.is_multilingual, "num_languages": model.num_languages},
        "n_params": sum(p.numel() for p in model.parameters()),
        "opset": OPSET,
    }
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / "asr_distill.json", json.dumps(description, indent=2, default=str))
    return out


def is_onnx_export(path: Any) -> bool:
    """Whether ``path`` is a folder :func:`export_onnx` wrote (its ``config.json`` names the format)."""
    if not isinstance(path, str | os.PathLike) or not os.path.isdir(path):
        return False
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_description(path: str | os.PathLike) -> dict[str, Any]:
    """The self-description stored beside an export (``asr_distill.json``), or ``{}``."""
    try:
        desc = json.loads((Path(path) / "asr_distill.json").read_text())
    except (OSError, ValueError):
        return {}
    return desc if isinstance(desc, dict) else {}


def _session(path: Path, threads: int):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(f"decoding an ONNX export needs onnxruntime: {EXTRA} ({e})") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class _Decoded:
    """What one decoding loop produced, per row (``R`` rows: clips times samples per clip).

    Tokens after the prompt ``(R, S)``, each step's log-probability of its token ``(R, S)``
    and entropies ``(R, S, 3)``, the summed log-probability that samples are ranked by
    ``(R,)``, and the logits at the start-of-transcript token ``(R, V)``.
    """

    tokens: torch.Tensor
    lp: torch.Tensor
    ent: torch.Tensor
    sum_lp: torch.Tensor
    sot_logits: torch.Tensor


def _until(row: list[int], eot: int) -> list[int]:
    """The tokens before the first end token."""
    return row[: row.index(eot)] if eot in row else row


@dataclass(frozen=True)
class OnnxTeacher(Teacher):
    """An ONNX export as a ``Teacher`` for the labeler's records: no PyTorch model behind it."""

    params: int = 0
    multilingual: bool = False

    @property
    def is_multilingual(self) -> bool:
        """Whether the model has language tokens."""
        return self.multilingual

    @property
    def n_params(self) -> int:
        """Parameters of the exported model (recorded at export)."""
        return self.params


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> tuple[OnnxTeacher, OnnxBackend]:
    """An ONNX export folder as the labeler's ``(teacher, backend)`` pair.

    Raises:
        ValueError: ``path`` is not a folder :func:`export_onnx` wrote, or a later format.
    """
    folder = Path(path)
    if not is_onnx_export(folder):
        raise ValueError(f"{folder} is not an ONNX export written by asr-distill export --onnx")
    config = json.loads((folder / "config.json").read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder}: ONNX export format {config.get('format_version')} is not supported")
    backend = OnnxBackend(folder, config, torch.get_num_threads() if threads is None else threads)
    name = folder.name
    teacher = OnnxTeacher(
        name,
        None,
        "onnx",
        str(folder),
        params=config["n_params"],
        multilingual=config["tokenizer"]["multilingual"],
    )
    return teacher, backend


class OnnxBackend:
    """ONNX Runtime behind the labeler's ``Backend`` interface; greedy decoding only."""

    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, folder: Path, config: dict[str, Any], threads: int):
        self.dims = ModelDimensions(**config["dims"])
        self.multilingual = bool(config["tokenizer"]["multilingual"])
        self.num_languages = int(config["tokenizer"]["num_languages"])
        self.tokenizer = make_tokenizer(self.multilingual, self.num_languages)
        self.device = torch.device("cpu")
        self._encoder = _session(folder / "encoder.onnx", threads)
        self._decoder = _session(folder / "decoder.onnx", threads)

    def encode(self, audios: list[np.ndarray], window_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Cross-attention keys and values ``(L, B, T, d)`` for clips padded or cut to ``window_s``."""
        mels = log_mel_batch(audios, window_s, self.dims.n_mels)
        check_features(audios, mels)
        k, v = self._encoder.run(None, {"mel": mels.numpy()})
        return k, v

    def auto_batch_size(self) -> int:
        """8 clips: ONNX Runtime runs on the CPU here, where that size was measured fastest."""
        return DEFAULT_BATCH_SIZE

    def select(self, features: tuple[np.ndarray, np.ndarray], idx: list[int]):
        """The clips ``idx`` of ``features``."""
        return tuple(f[:, idx] for f in features)

    def _step(self, tokens: np.ndarray, cache: tuple[np.ndarray, np.ndarray], features):
        """One decoder pass: logits ``(B, S, V)`` and the grown cache."""
        logits, k, v = self._decoder.run(
            None,
            {
                "tokens": tokens,
                "self_k": cache[0],
                "self_v": cache[1],
                "cross_k": features[0],
                "cross_v": features[1],
            },
        )
        return torch.from_numpy(logits), (k, v)

    def _empty_cache(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros((self.dims.n_text_layer, n, 0, self.dims.n_text_state), np.float32)
        return empty, empty

    def _languages(self, sot_logits: torch.Tensor) -> list[tuple[str, float | None]]:
        """The language detector's answer from the logits at the start-of-transcript position."""
        if not self.multilingual:
            return [("en", None)] * sot_logits.shape[0]
        ids = list(self.tokenizer.all_language_tokens)
        probs = sot_logits[:, ids].float().softmax(-1)
        best = probs.argmax(-1).tolist()
        codes = self.tokenizer.all_language_codes
        return [(codes[b], float(probs[i, b])) for i, b in enumerate(best)]

    def detect_language(self, features) -> list[tuple[str, float | None]]:
        """``(code, probability)`` per clip, from one decoder step at the start-of-transcript token."""
        n = features[0].shape[1]
        if not self.multilingual:
            return [("en", None)] * n
        sot = np.full((n, 1), self.tokenizer.sot, dtype=np.int64)
        logits, _ = self._step(sot, self._empty_cache(n), features)
        return self._languages(logits[:, 0])

    def _prompt(self, step: DecodePass) -> tuple[Tokenizer, list[int], list]:
        """The pass's tokenizer, its start sequence, and openai-whisper's logit filters for it."""
        if step.beam_size is not None and step.temperature == 0:
            raise ValueError(
                "the ONNX runner decodes greedily or by sampling, not by beam search "
                f"(beam_size={step.beam_size})"
            )
        tok = get_tokenizer(
            self.multilingual,
            num_languages=self.num_languages,
            language=step.language if self.multilingual else "en",
            task=step.task,
        )
        prompt = list(tok.sot_sequence if step.timestamps else tok.sot_sequence_including_notimestamps)
        suppress = [*tok.non_speech_tokens, tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm]
        suppress += [tok.no_speech] if tok.no_speech is not None else []
        filters = [SuppressBlank(tok, len(prompt)), SuppressTokens(sorted(set(suppress)))]
        if step.timestamps:
            initial = round(MAX_INITIAL_TIMESTAMP_S / (CHUNK_LENGTH / self.dims.n_audio_ctx))
            filters.append(BatchedTimestampRules(ApplyTimestampRules(tok, len(prompt), initial)))
        return tok, prompt, filters

    def _loop(self, features, prompt: list[int], filters: list, eot: int, step: DecodePass) -> _Decoded:
        """openai-whisper's decoding loop (greedy, or sampling at ``step.temperature``) on ONNX Runtime.

        Each step's statistics come from the raw logits the step computed; a row still open at
        the token cap gets one more step, which scores its end token.
        """
        n = features[0].shape[1]
        tokens = torch.tensor([prompt] * n)
        logits, cache = self._step(tokens.numpy(), self._empty_cache(n), features)
        sot_logits = logits[:, prompt.index(self.tokenizer.sot)].float()
        sum_lp, chosen_lp, step_ent = torch.zeros(n), [], []
        for _ in range(step.max_tokens):
            logp = logits[:, -1].float().log_softmax(-1)
            step_ent.append(entropies(logp, step.entropy_alpha))
            scores = logits[:, -1].float().clone()
            for f in filters:
                f.apply(scores, tokens)
            if step.temperature > 0:
                nxt = torch.distributions.Categorical(logits=scores / step.temperature).sample()
            else:
                nxt = scores.argmax(-1)
            open_rows = tokens[:, -1] != eot
            sum_lp += scores.log_softmax(-1).gather(-1, nxt[:, None])[:, 0] * open_rows
            nxt[~open_rows] = eot
            chosen_lp.append(logp.gather(-1, nxt[:, None])[:, 0])
            tokens = torch.cat([tokens, nxt[:, None]], -1)
            if bool((nxt == eot).all()):
                break
            logits, cache = self._step(nxt[:, None].numpy(), cache, features)
        else:  # some rows hit the cap: the step after their last token scores the end token
            logp = logits[:, -1].float().log_softmax(-1)
            step_ent.append(entropies(logp, step.entropy_alpha))
            chosen_lp.append(logp[:, eot])
        return _Decoded(
            tokens[:, len(prompt) :], torch.stack(chosen_lp, 1), torch.stack(step_ent, 1), sum_lp, sot_logits
        )

    def generate(self, features, step: DecodePass) -> list[RawHypothesis]:
        """One hypothesis per clip: greedy, or the best of ``best_of`` samples as whisper ranks them."""
        tok, prompt, filters = self._prompt(step)
        group = step.best_of if step.temperature > 0 else 1
        if group > 1:
            features = tuple(np.repeat(f, group, axis=1) for f in features)
        d = self._loop(features, prompt, filters, tok.eot, step)
        outs = [_until(row, tok.eot) for row in d.tokens.tolist()]
        if tok.no_speech is not None:
            no_speech = d.sot_logits.softmax(-1)[:, tok.no_speech].tolist()
        else:
            no_speech = [math.nan] * len(outs)
        langs = self._languages(d.sot_logits)
        hyps = []
        for first in range(0, len(outs), group):
            rows = range(first, first + group)
            best = max(rows, key=lambda r: float(d.sum_lp[r]) / max(len(outs[r]), 1))  # whisper's ranker
            hyps.append(
                self._hypothesis(tok, outs[best], d.lp[best], d.ent[best], no_speech[first], langs[first])
            )
        return hyps

    @staticmethod
    def _hypothesis(tok: Tokenizer, out: list[int], lp, ent, no_speech: float, lang) -> RawHypothesis:
        """One clip's record: tokens before the end token, and ``WhisperBackend``'s averaging.

        The average covers text tokens and the end token, not timestamp tokens.
        """
        rows = torch.cat([lp[: len(out) + 1, None], ent[: len(out) + 1]], -1).tolist()
        stats = [tuple(round(x, 4) for x in row) for row in rows]
        chosen = [*out, tok.eot]
        text_lp = [s[0] for t, s in zip(chosen, stats, strict=True) if t < tok.timestamp_begin]
        avg = sum(text_lp) / len(text_lp)
        return RawHypothesis(tuple(out), tok.decode(out).strip(), avg, no_speech, tuple(stats[:-1]), lang)


__all__ = [
    "FILES",
    "FORMAT",
    "OnnxBackend",
    "OnnxTeacher",
    "export_onnx",
    "is_onnx_export",
    "load_onnx",
    "read_description",
]
