"""Short encoder windows for students: pad a clip only to its length, rounded up.

Whisper pads every input to 30 s, and on CPU the encoder dominates, so a 3 s clip pays
for 30 s. Untrained Whisper tolerates a 10 s context but loops below it (NOTES.md); a
student whose decoder is trained on the same short windows it decodes with does not.
The policy is one function, used identically by training (``data.py``) and decoding
(``student_options``: the labeler's ``LabelOptions`` holding this policy), and stored in
every exported checkpoint. It is its own type, not the teacher's ``ContextFloor``: a
student's 2 s minimum is not a teacher floor, and neither is checked by the other's rules.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

from ..teacher.options import WINDOW_S, ContextFloor, LabelOptions, guarded

WINDOW_STEP_S = 1.0  # windows come in whole seconds, so a batch of similar clips shares one
WINDOW_MARGIN_S = 0.5  # silence kept after the speech, as the teacher saw in its 30 s windows
MIN_WINDOW_S = 2.0


@dataclass(frozen=True)
class WindowPolicy:
    """Which encoder window (seconds) a clip of a given duration is padded to.

    ``step_s=0`` (or ``short=False``) means Whisper's fixed 30 s window.
    """

    short: bool = True
    step_s: float = WINDOW_STEP_S
    margin_s: float = WINDOW_MARGIN_S
    min_s: float = MIN_WINDOW_S

    def __post_init__(self) -> None:
        if self.short and (self.step_s <= 0 or self.min_s <= 0 or self.margin_s < 0):
            raise ValueError(f"window policy needs step_s > 0, min_s > 0, margin_s >= 0, got {self}")
        if self.short and round(self.step_s * 50) != self.step_s * 50:
            raise ValueError(f"step_s must be a multiple of 0.02 s (one encoder frame), got {self.step_s}")

    def window_for(self, duration: float) -> float:
        """The clip plus its margin, rounded up to a whole step, between ``min_s`` and 30 s."""
        if not self.short:
            return WINDOW_S
        w = math.ceil((duration + self.margin_s) / self.step_s - 1e-9) * self.step_s
        return float(min(WINDOW_S, max(self.min_s, round(w, 2))))

    def as_fields(self) -> dict[str, Any]:
        """Flat ``LabelOptions.as_dict`` entries, under the names student provenance always had."""
        return {
            "short_context": self.short,
            "min_window_s": self.min_s,
            "window_step_s": self.step_s,
            "window_margin_s": self.margin_s,
        }


def student_options(
    policy: WindowPolicy, temperatures: tuple[float, ...] | None = None, timestamps: bool = False
) -> LabelOptions:
    """The labeler's options for decoding a student: its ``WindowPolicy`` and its timestamp mode.

    Everything else (fallback ladder, quality checks, token cap, retry at 30 s) is the
    teacher's, so a student is decoded by exactly the labeler's code. A student decodes in
    the mode it learned its labels in (``timestamps``, stored in its self-description):
    after ``<|notimestamps|>`` by default; a student trained without timestamps but decoded
    with them closed a segment mid-number and stopped ("call me back at 555-"), 10.93% WER
    against 8.86% without.

    Args:
        policy: the windows the student was trained on (stored in its checkpoint).
        temperatures: the fallback ladder; None keeps the labeler's.
        timestamps: the student learned ``<|0.00|> text <|end|>`` targets (``model.timestamps``).
    """
    options = LabelOptions(windows=policy, timestamps=timestamps)
    return options if temperatures is None else replace(options, temperatures=tuple(temperatures))


def described_options(description: dict[str, Any] | None) -> LabelOptions | None:
    """The labeler's options a student's self-description names (windows, timestamp mode), or None.

    Raises:
        TypeError, ValueError: the description's window policy is malformed.
    """
    policy = (description or {}).get("window_policy")
    if not isinstance(policy, dict):
        return None
    return student_options(WindowPolicy(**policy), timestamps=bool(description.get("timestamps", False)))


def evaluation_options(description: dict[str, Any] | None, source: object = "") -> LabelOptions:
    """Evaluation's guarded search in a model's own windows, whatever runtime decodes it.

    A student stores its window policy in its self-description (``window_policy``); decoding it
    with the teacher's defaults would measure another model. Anything else gets the fastest
    short context (10 s), so speed comparisons against a student are conservative.
    """
    try:
        options = described_options(description)
    except (TypeError, ValueError) as e:
        policy = (description or {}).get("window_policy")
        log = logging.getLogger(__name__)
        log.warning("%s: ignoring its stored window policy %r (%s)", source, policy, e)
        options = None
    return guarded(options if options is not None else LabelOptions(windows=ContextFloor(10.0)))
