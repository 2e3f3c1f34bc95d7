"""The student stage: a compact Whisper distilled from the teacher's pseudo-labels.

``build`` cuts a student from the teacher (or starts from a smaller Whisper), ``data``
turns manifests into window-bucketed batches (cached encoder outputs when frozen),
``module`` is the LightningModule, ``short_context`` the window policy that lets the
student skip Whisper's 30 s padding, ``export`` writes openai-whisper and CTranslate2 models.
Lightning is imported by ``data`` and ``module``; import those where you train.
"""

from .build import StudentLayout, cut_student, param_count, spaced_layers
from .short_context import WindowPolicy, student_options

__all__ = ["StudentLayout", "WindowPolicy", "cut_student", "param_count", "spaced_layers", "student_options"]
