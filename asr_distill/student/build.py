"""Student construction: a smaller Whisper made of the teacher's own layers.

Distil-Whisper's recipe: keep the whole encoder (it carries most of the acoustic
knowledge and, frozen, costs nothing to train) and only a few decoder layers, copied
from the teacher at maximally spaced depths (k=2: the first and the last), so the
student starts close to the teacher instead of from scratch. Alternatively start
from a smaller pretrained Whisper (``tiny.en`` ships offline).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import torch
from whisper.model import ModelDimensions, Whisper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentLayout:
    """Which teacher layers the student kept, and what that saved.

    ``encoder_layers``/``decoder_layers`` are the teacher's block indices, in the
    student's order; empty when the student was not cut from the teacher.
    """

    source: str
    encoder_layers: tuple[int, ...]
    decoder_layers: tuple[int, ...]
    teacher_params: int
    student_params: int

    def describe(self) -> str:
        """One log line: sizes, the share of the teacher kept, and which layers."""
        return (
            f"student {self.student_params / 1e6:.1f}M params (teacher {self.teacher_params / 1e6:.1f}M, "
            f"{self.student_params / self.teacher_params:.0%}), from {self.source}: encoder layers "
            f"{list(self.encoder_layers) or 'own'}, decoder layers {list(self.decoder_layers) or 'own'}"
        )


def param_count(model: torch.nn.Module) -> int:
    """Parameters, counting a tied weight once (Whisper ties the output projection)."""
    return sum(p.numel() for p in model.parameters())


def spaced_layers(n_layers: int, k: int) -> tuple[int, ...]:
    """``k`` maximally spaced indices out of ``n_layers``, always keeping the first and last.

    >>> spaced_layers(6, 2), spaced_layers(6, 3), spaced_layers(4, 1)
    ((0, 5), (0, 2, 5), (3,))
    """
    if not 1 <= k <= n_layers:
        raise ValueError(f"cannot keep {k} of {n_layers} layers: choose 1 <= k <= {n_layers}")
    if k == 1:
        return (n_layers - 1,)  # the last layer feeds the output projection it was trained with
    return tuple(round(i * (n_layers - 1) / (k - 1)) for i in range(k))


def _copy_blocks(dst: torch.nn.ModuleList, src: torch.nn.ModuleList, keep: tuple[int, ...]) -> None:
    for j, i in enumerate(keep):
        dst[j].load_state_dict(src[i].state_dict())


def cut_student(
    teacher: Whisper, decoder_layers: int = 2, encoder_layers: tuple[int, ...] | list[int] | None = None
) -> tuple[Whisper, StudentLayout]:
    """A student with the teacher's encoder (or a subset of its layers) and k spaced decoder layers.

    Args:
        teacher: the openai-whisper model to copy from (left unchanged).
        decoder_layers: how many decoder layers to keep (``spaced_layers``).
        encoder_layers: teacher encoder block indices to keep, in order; None keeps all.
    """
    td = teacher.dims
    enc = tuple(range(td.n_audio_layer)) if encoder_layers is None else tuple(encoder_layers)
    if not enc or any(not 0 <= i < td.n_audio_layer for i in enc):
        raise ValueError(f"encoder_layers {list(enc)} must be indices in 0..{td.n_audio_layer - 1}")
    dec = spaced_layers(td.n_text_layer, decoder_layers)
    dims = ModelDimensions(**{**asdict(td), "n_audio_layer": len(enc), "n_text_layer": len(dec)})
    student = Whisper(dims)
    shared = {k: v for k, v in teacher.state_dict().items() if ".blocks." not in k}
    missing, _ = student.load_state_dict(shared, strict=False)
    if any(".blocks." not in k for k in missing):
        raise RuntimeError(f"student is missing non-block weights {missing}: dims do not match the teacher")
    _copy_blocks(student.encoder.blocks, teacher.encoder.blocks, enc)
    _copy_blocks(student.decoder.blocks, teacher.decoder.blocks, dec)
    layout = StudentLayout("teacher layers", enc, dec, param_count(teacher), param_count(student))
    return student.eval(), layout


def pretrained_student(model: Whisper, teacher: Whisper, source: str) -> tuple[Whisper, StudentLayout]:
    """Start from another (smaller) pretrained Whisper, e.g. ``tiny.en``; a private copy is returned."""
    student = copy.deepcopy(model).eval()
    return student, StudentLayout(source, (), (), param_count(teacher), param_count(student))


def same_tokenizer(a: Whisper, b: Whisper) -> bool:
    """KL to the teacher needs both models to share one vocabulary (multilingual vs .en differ)."""
    return a.is_multilingual == b.is_multilingual and a.dims.n_vocab == b.dims.n_vocab


def encoder_shared(student: Whisper, teacher: Whisper) -> bool:
    """True when the student's encoder computes exactly what the teacher's does (same weights)."""
    s, t = student.encoder.state_dict(), teacher.encoder.state_dict()
    return s.keys() == t.keys() and all(s[k].shape == t[k].shape and torch.equal(s[k], t[k]) for k in s)
