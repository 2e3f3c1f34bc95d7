"""Export a trained student to the formats people already run.

* ``.pt`` in openai-whisper's layout (``dims`` + ``model_state_dict``): ``whisper.load_model``
  and ``asr_distill.load_teacher`` open it; the extra ``asr_distill`` key describes the
  checkpoint (tokenizer, normaliser, window policy, training config, label provenance).
* a CTranslate2 directory (``model.bin`` written by ``teacher.ct2``, plus the teacher's
  ``config.json``/``tokenizer.json``/``vocabulary.txt``) that ``faster_whisper.WhisperModel``
  opens; ``asr_distill.json`` beside it holds the same self-description.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from whisper.model import ModelDimensions, Whisper

from ..jsonl import atomic_write_text
from ..safe_load import checkpoint_globals, load_checkpoint
from ..teacher import Teacher, ct2
from ..teacher.options import LabelOptions
from .short_context import WindowPolicy, described_options, student_options

log = logging.getLogger(__name__)

SIDE_FILES = ("tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json")


def load_student_checkpoint(ckpt: str | os.PathLike, map_location: str = "cpu", wise_alpha: float = 1.0):
    """A Lightning checkpoint back into a ``StudentModule`` (teacher reloaded by name).

    LoRA adapters are merged into the weights, so ``module.model`` is a plain Whisper that
    every exporter writes as it is. ``wise_alpha`` < 1 then keeps only that fraction of what
    training changed (WiSE-FT: the rest goes back to the starting weights), recorded in
    ``describe()``.

    Raises:
        UnsafeCheckpointError: the file would run code when unpickled (nothing is run).
        CheckpointError: the file is not a readable torch checkpoint.
    """
    from .module import StudentModule

    load_checkpoint(ckpt)  # refuses a crafted or broken file in one line, before Lightning reads it
    with checkpoint_globals():
        module = StudentModule.load_from_checkpoint(str(ckpt), map_location=map_location, weights_only=True)
    module.merge_adapters()
    return _wise(module, wise_alpha).eval()


def _wise(module, wise_alpha: float):
    """``module`` keeping ``wise_alpha`` of training's change (WiSE-FT), recorded in ``describe()``."""
    if wise_alpha != 1.0:
        moved = module.interpolate_to_start(wise_alpha)
        module.wise_alpha = wise_alpha
        log.info("kept %.2f of the training's change in %d tensors (WiSE-FT)", wise_alpha, moved)
    return module


SOUP_KEYS = ("teacher", "init", "decoder_layers", "encoder_layers")  # what makes two students one start


def load_student_soup(ckpts: Sequence[str | os.PathLike], map_location: str = "cpu", wise_alpha: float = 1.0):
    """Students of one start trained on the same labels, averaged weight by weight, then WiSE-FT.

    A uniform model soup: the first checkpoint's module with every weight the mean over all
    of them (adapters merged first), ``describe()["soup_of"]`` naming them. One checkpoint is
    ``load_student_checkpoint``.

    Raises:
        ValueError: no checkpoint, or students that did not start from the same model.
    """
    from .regularise import average_into

    if not ckpts:
        raise ValueError("a soup needs at least one checkpoint")
    modules = [load_student_checkpoint(c, map_location) for c in ckpts]
    first = modules[0]
    for c, m in zip(ckpts[1:], modules[1:], strict=True):
        differ = [k for k in SOUP_KEYS if m.hparams.get(k) != first.hparams.get(k)]
        if differ:
            raise ValueError(f"{c} did not start where {ckpts[0]} did ({', '.join(differ)} differ): no soup")
    if len(modules) > 1:
        average_into(first.model, [m.model for m in modules[1:]])
        first.soup_of = [str(Path(c).resolve()) for c in ckpts]
        log.info("averaged %d students (a uniform soup)", len(modules))
    return _wise(first, wise_alpha).eval()


def _default_alignment_heads(dims: ModelDimensions) -> torch.Tensor:
    """All heads of the decoder's second half, openai-whisper's default for unknown models."""
    mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
    mask[dims.n_text_layer // 2 :] = True
    return mask


def source_alignment_heads(name: str, n_text_head: int) -> torch.Tensor | None:
    """A known model's word-timing heads ``(layers, heads)``: by openai-whisper name, else from its files.

    Names in whisper's own table (``base``, ``tiny.en``... as the packaged teachers are) are
    read there; a CTranslate2 folder has them in ``config.json``, an openai-whisper ``.pt``
    under ``alignment_heads``. None when the model is not known.
    """
    import whisper

    if name in whisper._ALIGNMENT_HEADS:
        raw = gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS[name]))
        if len(raw) % n_text_head:  # another head count: not this student's source
            return None
        return torch.from_numpy(np.frombuffer(raw, dtype=bool).copy()).reshape(-1, n_text_head)
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        pairs = json.loads((path / "config.json").read_text()).get("alignment_heads") or []
        if not pairs:
            return None
        mask = torch.zeros(max(layer for layer, _ in pairs) + 1, n_text_head, dtype=torch.bool)
        for layer, head in pairs:
            mask[layer, head] = True
        return mask
    if path.is_file() and path.suffix == ".pt":
        heads = load_checkpoint(path).get("alignment_heads")
        return heads.bool() if isinstance(heads, torch.Tensor) else None
    return None


def alignment_heads(dims: ModelDimensions, description: dict[str, Any]) -> torch.Tensor:
    """The student's word-timing heads ``(n_text_layer, n_text_head)``: its source model's where known.

    Word timestamps read a few cross-attention heads, chosen per model; all heads of the last
    half (the default) time words worse. A student started from a pretrained Whisper
    (``training_config.init``) keeps that model's heads; one cut from the teacher keeps the
    teacher's heads in the decoder layers it copied (``layout.decoder_layers``). An unknown
    source, a shape that does not fit, or a cut that kept none of them: the default.
    """
    config = description.get("training_config") or {}
    init = config.get("init")
    source = config.get("teacher") if init == "teacher" else init
    heads = source_alignment_heads(str(source), dims.n_text_head) if source else None
    kept = tuple((description.get("layout") or {}).get("decoder_layers") or ())
    if heads is not None and init == "teacher" and kept and max(kept) < len(heads):
        heads = heads[list(kept)]
    if heads is None or heads.shape != (dims.n_text_layer, dims.n_text_head) or not heads.any():
        return _default_alignment_heads(dims)
    return heads


def export_whisper_pt(
    model: Whisper, out: str | os.PathLike, description: dict[str, Any], half: bool = False
) -> Path:
    """Write ``out`` (atomic) so that ``whisper.load_model(out)`` returns this model.

    float32 by default so the export decodes exactly as the in-training model did;
    ``half`` stores float16 (half the size, the layout of OpenAI's own checkpoints).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if half and v.is_floating_point() else v.float() if v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    ckpt = {
        "dims": asdict(model.dims),
        "model_state_dict": state,
        "alignment_heads": alignment_heads(model.dims, description),
        "asr_distill": description,
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, out)
    return out


def _ct2_config(side_dir: Path | None, dims: ModelDimensions, description: dict[str, Any]) -> dict:
    config = {}
    if side_dir is not None and (side_dir / "config.json").is_file():
        config = json.loads((side_dir / "config.json").read_text())
    heads = alignment_heads(dims, description).nonzero().tolist()
    config["alignment_heads"] = [[int(a), int(b)] for a, b in heads]
    return config


def export_ct2(
    model: Whisper, out_dir: str | os.PathLike, side_dir: str | os.PathLike, description: dict[str, Any]
) -> Path:
    """Write a CTranslate2 Whisper directory (float16 weights) faster-whisper opens.

    Args:
        model: the student.
        out_dir: the directory to create (files inside are replaced atomically).
        side_dir: a CTranslate2 directory of a model with the same tokenizer (the teacher's,
            or tiny.en's for a tiny.en student), whose tokenizer/vocabulary files are copied.
        description: the self-description, written to ``asr_distill.json``.
    """
    out, side = Path(out_dir), Path(side_dir)
    if not (side / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{side} has no tokenizer.json: give the CTranslate2 folder of the model "
            "the student shares its tokenizer with"
        )
    out.mkdir(parents=True, exist_ok=True)
    variables, aliases = ct2.ct2_variables(model.state_dict(), asdict(model.dims), np.float16)
    ct2.write_model_bin(out / "model.bin", variables, aliases)
    atomic_write_text(out / "config.json", json.dumps(_ct2_config(side, model.dims, description), indent=2))
    for name in SIDE_FILES:
        if (side / name).is_file():
            tmp = out / f".{name}.tmp"
            shutil.copy(side / name, tmp)
            os.replace(tmp, out / name)
    atomic_write_text(out / "asr_distill.json", json.dumps(description, indent=2, default=str))
    return out


def tokenizer_ct2_dir(module) -> Path | None:
    """The CTranslate2 folder of the model the student's tokenizer comes from, if it has one.

    A CTranslate2 export copies ``tokenizer.json`` from there, as faster-whisper reads it.
    """
    from ..teacher import load_teacher

    init = module.hparams.init
    return load_teacher(module.hparams.teacher if init == "teacher" else init).ct2_dir


def student_teacher(path: str | os.PathLike) -> tuple[Teacher, LabelOptions]:
    """An exported ``.pt`` as a ``Teacher`` for the labeler, with the window policy it was trained for.

    ``decode_batch(make_backend(teacher), batch, options, provenance)`` then decodes it
    exactly as the teacher is decoded, in the student's own short windows.
    """
    from ..teacher import load_teacher

    teacher = load_teacher(path)
    ckpt = load_checkpoint(path)
    desc = ckpt.get("asr_distill") or {}
    return teacher, described_options(desc) or student_options(WindowPolicy(short=False))
