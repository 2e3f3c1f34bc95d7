"""Export a student to whisper.cpp's GGML format and decode it with the ``pywhispercpp`` bindings.

The file is what whisper.cpp's loader reads (``whisper_model_load``), little-endian:

1. magic ``0x67676d6c`` ("ggml"), then eleven int32: ``n_vocab``, ``n_audio_ctx``,
   ``n_audio_state``, ``n_audio_head``, ``n_audio_layer``, ``n_text_ctx``, ``n_text_state``,
   ``n_text_head``, ``n_text_layer``, ``n_mels``, ``ftype`` (1: big matrices in float16);
2. the mel filterbank: int32 ``n_mel``, int32 ``n_fft``, then ``n_mel * n_fft`` float32
   (openai-whisper's own ``mel_filters.npz``, so features match the PyTorch model's);
3. the vocabulary: int32 count, then per token (in id order) int32 length + its bytes
   (openai-whisper's ``.tiktoken`` file; whisper.cpp adds the special tokens itself from
   ``n_vocab``);
4. one record per tensor: int32 ``n_dims``, int32 name length, int32 dtype (0 float32,
   1 float16), ``n_dims`` int32 sizes innermost first (numpy's shape reversed), the name,
   the data. Matrices and conv kernels are float16, as whisper.cpp expects; biases, norms
   and positional embeddings float32; conv biases have shape ``(n_state, 1)``.

whisper.cpp names tensors as openai-whisper's ``state_dict`` does, so a ``Whisper`` module
exports as it is. Its loader trusts the file (a truncated one can crash the process), so
:func:`read_ggml_header` walks every record first and :func:`transcribe_ggml` refuses a file
that does not hold exactly the tensors its hyper-parameters call for.

Decoding mirrors the evaluator's PyTorch path (``evaluate.decoding.transcribe``): greedy, no
temperature fallback, each clip in the encoder window its options name (a student's stored
window policy, else a 10 s context floor) via whisper.cpp's ``audio_ctx``, capped at the same
token count, and a clip that loops or scores below the log-probability threshold decoded
again at 30 s.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..audio import iter_audio
from ..jsonl import atomic_write_text
from ..manifest import read_manifest
from ..records import Skip, Transcription, Utterance
from ..teacher.loops import loops
from ..teacher.options import WINDOW_S, LabelOptions
from .short_context import evaluation_options

log = logging.getLogger(__name__)

GGML_MAGIC = 0x67676D6C  # "ggml"; on disk (little-endian) the bytes read "lmgg"
MAGIC_BYTES = struct.pack("<I", GGML_MAGIC)
HPARAMS = (
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
    "ftype",
)
F32, F16 = 0, 1  # whisper.cpp's tensor dtype codes (and file ftype: 1 = float16 matrices)
DTYPE_BYTES = {F32: 4, F16: 2}
FLOAT32_TENSORS = frozenset(  # matrices whisper.cpp reads as float32
    {
        "encoder.conv1.bias",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
    }
)
MULTILINGUAL_VOCAB = 51865  # whisper.cpp: a model is multilingual when n_vocab >= this
SIDECAR_SUFFIX = ".asr_distill.json"
MAX_TOKEN_BYTES = 1024  # no tiktoken entry is near this; a larger length means a corrupt file
MAX_NAME_BYTES = 256
MAX_HPARAM = 1 << 20  # far above any Whisper's sizes; a larger value means a corrupt header
FRAMES_PER_S = 50  # encoder positions per second of audio (audio_ctx = window * 50)
EXTRA = "pip install 'asr_distill[ggml]' (pywhispercpp)"


class GGMLFormatError(ValueError):
    """A file that is not a complete whisper.cpp GGML model; the message says what is wrong."""


@dataclass(frozen=True)
class GgmlHeader:
    """What :func:`read_ggml_header` found: hyper-parameters, vocabulary size, tensors (numpy shapes)."""

    hparams: dict[str, int]
    n_mels_filters: tuple[int, int]
    n_tokens: int
    tensors: dict[str, tuple[int, ...]]

    @property
    def params(self) -> int:
        """Parameters as PyTorch counts them (the encoder's positional embedding is a buffer)."""
        return sum(math.prod(s) for n, s in self.tensors.items() if n != "encoder.positional_embedding")


# --- layout ------------------------------------------------------------------------------


def _layer_shapes(prefix: str, d: int, cross: bool) -> dict[str, tuple[int, ...]]:
    """One residual block's tensors (numpy shapes), self- and optionally cross-attention."""
    shapes: dict[str, tuple[int, ...]] = {}
    for attn in ("attn", "cross_attn") if cross else ("attn",):
        for proj in ("query", "value", "out"):
            shapes[f"{prefix}.{attn}.{proj}.weight"] = (d, d)
            shapes[f"{prefix}.{attn}.{proj}.bias"] = (d,)
        shapes[f"{prefix}.{attn}.key.weight"] = (d, d)  # Whisper's key projection has no bias
        shapes[f"{prefix}.{attn}_ln.weight"] = shapes[f"{prefix}.{attn}_ln.bias"] = (d,)
    shapes[f"{prefix}.mlp.0.weight"], shapes[f"{prefix}.mlp.0.bias"] = (4 * d, d), (4 * d,)
    shapes[f"{prefix}.mlp.2.weight"], shapes[f"{prefix}.mlp.2.bias"] = (d, 4 * d), (d,)
    shapes[f"{prefix}.mlp_ln.weight"] = shapes[f"{prefix}.mlp_ln.bias"] = (d,)
    return shapes


def expected_tensors(h: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Every tensor whisper.cpp loads for these hyper-parameters, with its numpy shape."""
    d, td = h["n_audio_state"], h["n_text_state"]
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.positional_embedding": (h["n_audio_ctx"], d),
        "encoder.conv1.weight": (d, h["n_mels"], 3),
        "encoder.conv1.bias": (d, 1),
        "encoder.conv2.weight": (d, d, 3),
        "encoder.conv2.bias": (d, 1),
        "encoder.ln_post.weight": (d,),
        "encoder.ln_post.bias": (d,),
        "decoder.positional_embedding": (h["n_text_ctx"], td),
        "decoder.token_embedding.weight": (h["n_vocab"], td),
        "decoder.ln.weight": (td,),
        "decoder.ln.bias": (td,),
    }
    for i in range(h["n_audio_layer"]):
        shapes.update(_layer_shapes(f"encoder.blocks.{i}", d, cross=False))
    for i in range(h["n_text_layer"]):
        shapes.update(_layer_shapes(f"decoder.blocks.{i}", td, cross=True))
    return shapes


def _dtype_for(name: str, ndim: int, ftype: int = F16) -> int:
    """whisper.cpp's dtype for a tensor: float16 matrices in an f16 file, float32 otherwise."""
    return F16 if ftype == F16 and ndim >= 2 and name not in FLOAT32_TENSORS else F32


# --- export ------------------------------------------------------------------------------


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<model>.asr_distill.json``: the export's self-description beside the GGML file."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _whisper_assets() -> Path:
    import whisper

    return Path(whisper.__file__).parent / "assets"


def _mel_filters(n_mels: int) -> np.ndarray:
    """openai-whisper's own filterbank, ``(n_mels, n_fft // 2 + 1)`` float32."""
    with np.load(_whisper_assets() / "mel_filters.npz") as f:
        key = f"mel_{n_mels}"
        if key not in f:
            raise ValueError(f"openai-whisper ships no mel filterbank for n_mels={n_mels} (has {sorted(f)})")
        return np.ascontiguousarray(f[key], dtype="<f4")


def _vocabulary(multilingual: bool) -> list[bytes]:
    """The tokenizer's byte strings in id order, from openai-whisper's ``.tiktoken`` file."""
    import base64

    path = _whisper_assets() / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken")
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[int(rank)] = base64.b64decode(token)
    if sorted(ranks) != list(range(len(ranks))):
        raise ValueError(f"{path}: token ranks are not 0..{len(ranks) - 1}; is the whisper install intact?")
    return [ranks[i] for i in range(len(ranks))]


def _write_header(f: IO[bytes], h: dict[str, int], filters: np.ndarray, vocab: list[bytes]) -> None:
    f.write(MAGIC_BYTES + struct.pack(f"<{len(HPARAMS)}i", *(h[k] for k in HPARAMS)))
    f.write(struct.pack("<2i", *filters.shape) + filters.tobytes())
    f.write(struct.pack("<i", len(vocab)))
    for token in vocab:
        f.write(struct.pack("<i", len(token)) + token)


def _write_tensor(f: IO[bytes], name: str, data: np.ndarray) -> None:
    dtype = _dtype_for(name, data.ndim)
    data = np.ascontiguousarray(data, dtype="<f2" if dtype == F16 else "<f4")
    encoded = name.encode()
    f.write(struct.pack("<3i", data.ndim, len(encoded), dtype))
    f.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)) + encoded)
    f.write(data.tobytes())


def _tensors(model: Any, h: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """The model's weights as numpy arrays in whisper.cpp's shapes, checked against its layout first."""
    state = {k: v for k, v in model.state_dict().items() if k != "alignment_heads"}
    expected = expected_tensors(h)
    unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if unknown or missing:
        raise ValueError(
            f"the model's weights do not match whisper.cpp's Whisper layout (unknown: {unknown[:5]}, "
            f"missing: {missing[:5]}); merge adapters into the weights before exporting"
        )
    for name, tensor in state.items():
        data = tensor.detach().float().cpu().numpy().reshape(expected[name])
        yield name, data


def export_ggml(model: Any, out: Path, description: dict, tokenizer_multilingual: bool) -> Path:
    """Write ``out`` (atomically) as a whisper.cpp GGML model, and its sidecar description.

    Args:
        model: a ``whisper.model.Whisper`` (the student, or any openai-whisper model).
        out: the ``.bin`` to write; ``<out>.asr_distill.json`` gets the self-description.
        description: the student's self-description (window policy, tokenizer, provenance).
        tokenizer_multilingual: whether the student uses Whisper's multilingual tokenizer
            (else GPT-2's, as the ``.en`` models do); must agree with the model's vocabulary,
            since whisper.cpp infers the special tokens from ``n_vocab``.

    Raises:
        ValueError: the tokenizer and vocabulary size disagree, or the weights are not
            Whisper's layout.
    """
    out = Path(out)
    h = dict(vars(model.dims), ftype=F16)
    if tokenizer_multilingual != (h["n_vocab"] >= MULTILINGUAL_VOCAB):
        raise ValueError(
            f"tokenizer_multilingual={tokenizer_multilingual} but n_vocab={h['n_vocab']}: whisper.cpp "
            f"treats n_vocab >= {MULTILINGUAL_VOCAB} as multilingual; pass the student's own tokenizer"
        )
    filters, vocab = _mel_filters(h["n_mels"]), _vocabulary(tokenizer_multilingual)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            _write_header(f, h, filters, vocab)
            for name, data in _tensors(model, h):
                _write_tensor(f, name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    params = sum(p.numel() for p in model.parameters())
    ggml = {"dims": {k: h[k] for k in HPARAMS[:-1]}, "params": params, "ftype": "f16"}
    ggml["tokenizer"] = "multilingual" if tokenizer_multilingual else "gpt2"
    atomic_write_text(sidecar_path(out), json.dumps({**description, "ggml": ggml}, indent=2, default=str))
    return out


# --- reading -----------------------------------------------------------------------------


def is_ggml(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts with the GGML magic (reads 4 bytes, imports nothing)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC_BYTES
    except OSError:
        return False


class _Reader:
    """Reads a GGML file's fields, failing with where and what was cut short."""

    def __init__(self, f: IO[bytes], path: Path):
        self.f, self.path, self.size = f, path, os.fstat(f.fileno()).st_size

    def fail(self, what: str) -> GGMLFormatError:
        return GGMLFormatError(
            f"{self.path}: not a complete whisper.cpp GGML model: {what} (byte {self.f.tell()} of "
            f"{self.size}); export it again"
        )

    def ints(self, n: int, what: str) -> tuple[int, ...]:
        raw = self.f.read(4 * n)
        if len(raw) != 4 * n:
            raise self.fail(f"the file ends inside {what}")
        return struct.unpack(f"<{n}i", raw)

    def skip(self, n: int, what: str) -> None:
        if self.f.tell() + n > self.size:
            raise self.fail(f"the file ends inside {what} ({n} bytes expected)")
        self.f.seek(n, os.SEEK_CUR)


def _read_tensor(r: _Reader, known: dict[str, tuple[int, ...]], ftype: int) -> tuple[str, tuple[int, ...]]:
    n_dims, name_len, dtype = r.ints(3, "a tensor header")
    if not 1 <= n_dims <= 4 or not 1 <= name_len <= MAX_NAME_BYTES or dtype not in DTYPE_BYTES:
        raise r.fail(f"a tensor header reads n_dims={n_dims}, name length={name_len}, dtype={dtype}")
    ne = r.ints(n_dims, "a tensor's sizes")
    raw = r.f.read(name_len)
    if len(raw) != name_len:
        raise r.fail("the file ends inside a tensor name")
    name = raw.decode("utf-8", errors="replace")
    shape = tuple(reversed(ne))
    if name not in known:
        raise r.fail(f"tensor {name!r} is not one whisper.cpp loads")
    if shape != known[name] or dtype != _dtype_for(name, n_dims, ftype):
        raise r.fail(f"tensor {name!r} is {shape} dtype {dtype}, whisper.cpp expects {known[name]}")
    r.skip(math.prod(shape) * DTYPE_BYTES[dtype], f"tensor {name!r}")
    return name, shape


def read_ggml_header(path: str | os.PathLike) -> GgmlHeader:
    """Walk a GGML model's every record (tensor data is skipped, not read) and check it is whole.

    Raises:
        GGMLFormatError: not GGML, truncated, or not the tensors its hyper-parameters call for.
        OSError: the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if f.read(4) != MAGIC_BYTES:
            raise r.fail("it does not start with the GGML magic")
        h = dict(zip(HPARAMS, r.ints(len(HPARAMS), "the hyper-parameters"), strict=True))
        if h["ftype"] not in DTYPE_BYTES or not all(0 < h[k] <= MAX_HPARAM for k in HPARAMS[:-1]):
            raise r.fail(f"hyper-parameters out of range or quantized (only f16/f32 are read): {h}")
        n_mel, n_fft = r.ints(2, "the mel filterbank's size")
        if n_mel != h["n_mels"] or not 0 < n_fft <= 4096:
            raise r.fail(f"a mel filterbank of {n_mel} x {n_fft} for n_mels={h['n_mels']}")
        r.skip(4 * n_mel * n_fft, "the mel filterbank")
        (n_tokens,) = r.ints(1, "the vocabulary size")
        if not 0 < n_tokens <= h["n_vocab"]:
            raise r.fail(f"{n_tokens} vocabulary entries for n_vocab={h['n_vocab']}")
        for _ in range(n_tokens):
            (length,) = r.ints(1, "the vocabulary")
            if not 0 <= length <= MAX_TOKEN_BYTES:
                raise r.fail(f"a vocabulary entry of {length} bytes")
            r.skip(length, "the vocabulary")
        known, tensors = expected_tensors(h), {}
        while f.tell() < r.size:
            name, shape = _read_tensor(r, known, h["ftype"])
            tensors[name] = shape
    missing = sorted(set(known) - set(tensors))
    if missing:
        raise GGMLFormatError(
            f"{path}: not a complete whisper.cpp GGML model: {len(missing)} tensors missing "
            f"({', '.join(missing[:3])}...); export it again"
        )
    return GgmlHeader(h, (n_mel, n_fft), n_tokens, tensors)


# --- decoding ----------------------------------------------------------------------------


def _description(path: Path) -> dict[str, Any]:
    """The sidecar's self-description, or ``{}`` (with a warning when it is there but unreadable)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        desc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        log.warning("%s: ignoring the unreadable description (%s)", side, e)
        return {}
    return desc if isinstance(desc, dict) else {}


@dataclass(frozen=True)
class _Hypothesis:
    """One clip's output: its text, tokens sampled (timestamps included), mean text-token log-probability."""

    text: str
    n_tokens: int
    avg_logprob: float


def _import_pywhispercpp():
    try:
        import _pywhispercpp as pw
        from pywhispercpp.model import Model
    except ImportError as e:
        raise ImportError(f"decoding a GGML model needs pywhispercpp: {EXTRA}") from e
    return pw, Model


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class WhisperCpp:
    """A GGML model loaded in whisper.cpp, decoding one clip at a time (greedy, language en)."""

    def __init__(self, path: Path, threads: int):
        pw, model_cls = _import_pywhispercpp()
        self._pw = pw
        self.model = model_cls(
            str(path),
            redirect_whispercpp_logs_to=None,  # whisper.cpp logs every load and clip to stderr
            n_threads=threads,
            language="en",
            print_progress=False,
            print_realtime=False,
            print_timestamps=False,
            no_context=True,
            single_segment=True,  # one window per clip, as the evaluator's batched decode
            suppress_nst=True,  # openai-whisper's suppress_tokens="-1"
            temperature=0.0,
            temperature_inc=0.0,  # no fallback inside whisper.cpp: the caller retries at 30 s
            # whisper.cpp's flash-attention path (on by default) goes wrong in a shortened
            # audio_ctx: the AN4 student scored 5.18% WER there against 3.92% in PyTorch at
            # the same windows, and 3.79% with it off (at 30 s both paths agree)
            context_params={"flash_attn": False},
        )
        if self.model._ctx is None:
            raise GGMLFormatError(f"{path}: whisper.cpp could not load the model; export it again")

    def decode(self, audio: np.ndarray, window_s: float, o: LabelOptions, cap: int, t: float) -> _Hypothesis:
        """Decode ``audio`` (16 kHz mono float32) in a ``window_s`` encoder window at temperature ``t``.

        Greedy at ``t == 0``; above it, ``o.best_of`` samples and whisper.cpp keeps the likeliest.
        """
        segments = self.model.transcribe(
            np.ascontiguousarray(audio, dtype=np.float32),
            audio_ctx=round(window_s * FRAMES_PER_S),
            max_tokens=cap,
            no_timestamps=not o.timestamps,
            temperature=t,
            greedy={"best_of": o.best_of},
        )
        pw, ctx = self._pw, self.model._ctx
        eot, beg = pw.whisper_token_eot(ctx), pw.whisper_token_beg(ctx)
        tokens = [
            pw.whisper_full_get_token_data(ctx, i, j)
            for i in range(pw.whisper_full_n_segments(ctx))
            for j in range(pw.whisper_full_n_tokens(ctx, i))
        ]
        text_lp = [t.plog for t in tokens if t.id < eot]
        sampled = sum(1 for t in tokens if t.id < eot or t.id >= beg)
        avg = float(np.mean(text_lp)) if text_lp else 0.0
        return _Hypothesis(" ".join(s.text for s in segments).strip(), sampled, avg)

    def close(self) -> None:
        """Free whisper.cpp's context now rather than at interpreter exit."""
        if self.model._ctx is not None:
            self._pw.whisper_free(self.model._ctx)
            self.model._ctx = None


def _looped(h: _Hypothesis, cap: int, o: LabelOptions) -> bool:
    """The labeler's loop test: hit the token cap, a repeated n-gram, or a high compression ratio."""
    from whisper.utils import compression_ratio

    if h.n_tokens >= cap or loops(h.text):
        return True
    limit = o.compression_ratio_threshold
    return limit is not None and bool(h.text) and compression_ratio(h.text) > limit


def _improbable(h: _Hypothesis, o: LabelOptions) -> bool:
    return o.logprob_threshold is not None and h.avg_logprob < o.logprob_threshold


def decode_clip(engine: WhisperCpp, utt: Utterance, audio: np.ndarray, o: LabelOptions) -> str:
    """One clip's transcript, by the labeler's schedule: its own window, then 30 s up the ladder.

    The short window gets one greedy try; an output that loops (or is improbable, when
    ``o.logprob_threshold`` is set) is redone at 30 s at each of ``o.temperatures`` in turn.
    The first that passes is kept, else the one that does not loop, then the likeliest.
    """
    cap, window = o.token_cap(utt.duration), o.window_for(utt.duration)
    tries = [(window, o.temperatures[0])] if window < WINDOW_S else []
    tries += [(WINDOW_S, t) for t in o.temperatures]
    best, best_key = None, None
    for w, t in tries:
        h = engine.decode(audio, w, o, cap, t)
        looped = _looped(h, cap, o)
        key = (not (looped or _improbable(h, o)), not looped, h.avg_logprob)
        if best_key is None or key > best_key:
            best, best_key = h, key
        if key[0]:
            break
    return best.text if best is not None else ""


def _decode_manifest(
    engine: WhisperCpp, manifest: str | Path, o: LabelOptions, progress: bool
) -> tuple[list[tuple[Utterance, str]], int, float]:
    """(utterance, hypothesis) for every clip with a reference, clips skipped, wall seconds."""
    rows, skipped, missing_refs, audio_s = [], 0, 0, 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="utt", desc="whisper.cpp", dynamic_ncols=True)
    start = time.perf_counter()
    for item in iter_audio(read_manifest(manifest)):
        if isinstance(item, Skip):
            skipped += 1
        else:
            utt, audio = item
            hyp = decode_clip(engine, utt, audio, o)
            audio_s += utt.duration
            if utt.text is None:
                missing_refs += 1
            else:
                rows.append((utt, hyp))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rtfx=f"{audio_s / max(time.perf_counter() - start, 1e-9):.1f}", skipped=skipped)
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()
    if missing_refs or skipped:
        log.warning(
            "%s: %d utterances have no reference text and %d could not be decoded (bad audio); "
            "neither is scored",
            manifest,
            missing_refs,
            skipped,
        )
    return rows, skipped, wall


def transcribe_ggml(
    path: str | os.PathLike, manifest: str | Path, *, name: str | None = None, progress: bool = False
) -> Transcription:
    """Decode every utterance of ``manifest`` with a GGML model in whisper.cpp, timed.

    Filled as ``evaluate.decoding.transcribe`` fills it, so the two score side by side:
    bad audio is skipped (and counted), clips without a reference are left out, ``wall_s``
    covers decoding (audio reading included), not loading. Decoding options follow the
    sidecar's window policy (:func:`short_context.evaluation_options`); whisper.cpp runs on every core this
    process may use.

    Args:
        path: a GGML model (``export_ggml``'s output; its sidecar is read when present).
        manifest: NeMo manifest whose ``text`` is the reference.
        name: the model's display name (default: the file's name).
        progress: show a progress bar with the rate.

    Raises:
        GGMLFormatError: the file is not a complete GGML Whisper model.
        ImportError: pywhispercpp is not installed (names the extra).
    """
    path = Path(path)
    header = read_ggml_header(path)
    desc = _description(path)
    options = evaluation_options(desc, path)
    engine = WhisperCpp(path, available_cores())
    try:
        rows, skipped, wall = _decode_manifest(engine, manifest, options, progress)
    finally:
        engine.close()
    durs = tuple(u.duration for u, _ in rows)
    params = desc.get("ggml", {}).get("params") if isinstance(desc.get("ggml"), dict) else None
    return Transcription(
        model=name or path.name,
        source=str(path),
        params=params if isinstance(params, int) else header.params,
        ids=tuple(u.id for u, _ in rows),
        refs=tuple(u.text for u, _ in rows),
        hyps=tuple(h for _, h in rows),
        durations=durs,
        speakers=tuple(u.speaker for u, _ in rows),
        audio_s=round(sum(durs), 3),
        wall_s=round(wall, 3),
        skipped=skipped,
    )


__all__ = [
    "GGMLFormatError",
    "GgmlHeader",
    "WhisperCpp",
    "export_ggml",
    "expected_tensors",
    "is_ggml",
    "read_ggml_header",
    "sidecar_path",
    "transcribe_ggml",
]
