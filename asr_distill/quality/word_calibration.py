"""Word confidence calibrated on a few transcribed clips: the chance each word is right.

The consensus confidence (:func:`~asr_distill.quality.consensus.word_confidences`) is a vote
plus the teacher's probability, weighted by a rule. A user who has transcribed a hundred
clips of the pool can do better: a logistic regression fitted on those clips' words (wrong
or right against the transcript) turns what is known of each word without a reference
(its consensus confidence, the teacher's probability, how long it lasts and how long it
is, how common it is in the pool's labels, its neighbours' confidence) into the chance it
is right. The review queue then flags and ranks by that chance instead.

The fitted model is a handful of numbers kept as JSON (nothing read runs code).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..jsonl import atomic_write_text
from ..normalise import get_normaliser
from ..records import PseudoLabel
from .consensus import NORMALISER, spoken_words
from .review_queue import written_owners
from .review_sim import wrong_words

FEATURES = (
    "confidence",  # the consensus confidence
    "probability",  # the teacher's probability of the written word (the confidence where unknown)
    "duration_s",  # the written word's span (0.3 s where untimed)
    "chars",  # letters in the spoken word
    "log_share",  # log of the word's share of every spoken word of the labels calibrated together
    "neighbour",  # the lower confidence of the words either side (1 at an edge)
    "label_mean",  # the mean confidence of the label's words
)
UNTIMED_S = 0.3


@dataclass(frozen=True)
class WordCalibration:
    """A fitted logistic regression from word features to the chance a word is wrong.

    Attributes:
        features: the feature names, :data:`FEATURES` when fitted.
        mean: each feature's mean on the fitting words (features are standardised).
        scale: each feature's standard deviation there.
        coef: the regression's weights on standardised features.
        intercept: its intercept.
        words: words it was fitted on.
        wrong: of those, wrong against the transcripts.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    words: int
    wrong: int

    def p_wrong(self, x: np.ndarray) -> np.ndarray:
        """The chance each row of features is a wrong word."""
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def apply(
        self, labels: Sequence[PseudoLabel], pool: Sequence[PseudoLabel] | None = None
    ) -> list[PseudoLabel]:
        """``labels`` with each known word confidence replaced by the calibrated chance it is right.

        ``pool``: the labels whose words give each word's share (default: ``labels``; the
        filter's kept and dropped labels together when only the kept are reviewed).
        """
        rows = word_features(labels, pool)
        out = []
        for p, x in zip(labels, rows, strict=True):
            if x is None:
                out.append(p)
                continue
            right = iter(1.0 - self.p_wrong(x))
            conf = tuple(None if c is None else round(float(next(right)), 4) for c in p.word_confidence)
            out.append(replace(p, word_confidence=conf))
        return out

    def save(self, path: str | Path) -> None:
        """Written as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> WordCalibration:
        """Raises ValueError naming the file when it is not a word calibration of these features."""
        try:
            d = json.loads(Path(path).read_text())
            cal = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a word calibration ({e})") from e
        if cal.features != FEATURES:
            raise ValueError(f"{path}: fitted on features {cal.features}, this version computes {FEATURES}")
        if not len(cal.mean) == len(cal.scale) == len(cal.coef) == len(FEATURES):
            raise ValueError(f"{path}: not a word calibration (one mean, scale and weight per feature)")
        return cal


def _label_rows(p: PseudoLabel, share: dict[str, float], floor: float) -> np.ndarray | None:
    spoken, spans = spoken_words(p.teacher_text)
    conf = p.word_confidence
    if not spoken or len(conf) != len(spoken):
        return None
    owners = written_owners(p.teacher_text, p.words) or [[]] * len(p.teacher_text.split())
    known = [c for c in conf if c is not None]
    mean = sum(known) / len(known) if known else 1.0
    rows = []
    for i, (word, c) in enumerate(zip(spoken, conf, strict=True)):
        if c is None:
            continue
        a, b = spans[i]
        under = [t for mine in owners[a : b + 1] for t in mine]
        side = [conf[j] for j in (i - 1, i + 1) if 0 <= j < len(conf) and conf[j] is not None]
        rows.append(
            (
                c,
                min(t.probability for t in under) if under else c,
                max(t.end for t in under) - min(t.start for t in under) if under else UNTIMED_S,
                len(word),
                math.log(share.get(word, floor)),
                min(side) if side else 1.0,
                mean,
            )
        )
    return np.asarray(rows, dtype=float) if rows else None


def word_features(
    labels: Sequence[PseudoLabel], pool: Sequence[PseudoLabel] | None = None
) -> list[np.ndarray | None]:
    """One row of :data:`FEATURES` per spoken teacher word with a confidence, per label (None: none).

    A word's share is counted over ``pool`` (default: ``labels``).
    """
    counts = Counter(w for p in (labels if pool is None else pool) for w in spoken_words(p.teacher_text)[0])
    total = sum(counts.values()) or 1
    share = {w: n / total for w, n in counts.items()}
    return [_label_rows(p, share, 0.5 / total) for p in labels]


def read_transcribed(path: str | Path) -> list[PseudoLabel]:
    """Labels to fit on: a filter's output folder (kept.jsonl and dropped.jsonl) or one such file.

    Raises:
        FileNotFoundError: naming what is missing.
    """
    from .filter import read_pseudo_labels

    path = Path(path)
    if path.is_dir():
        files = [path / n for n in ("kept.jsonl", "dropped.jsonl") if (path / n).is_file()]
        if not files:
            raise FileNotFoundError(
                f"{path}: no kept.jsonl or dropped.jsonl (give a folder `asr-distill filter` wrote)"
            )
        return [p for f in files for p in read_pseudo_labels(f)]
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (give the filter's output of transcribed clips)")
    return read_pseudo_labels(path)


def fit_word_calibration(labels: Sequence[PseudoLabel]) -> WordCalibration:
    """Fit on labels with transcripts (``ref_text``); each known-confidence word is right or wrong.

    Raises:
        ValueError: no label with a transcript and word confidences, or no wrong (or no right) word.
    """
    from sklearn.linear_model import LogisticRegression  # installed with librosa

    norm = get_normaliser(NORMALISER)
    xs, ys = [], []
    for p, x in zip(labels, word_features(labels), strict=True):
        if x is None or p.ref_text is None:
            continue
        spoken = spoken_words(p.teacher_text)[0]
        wrong = wrong_words(spoken, norm(p.ref_text).split())
        xs.append(x)
        ys += [w for w, c in zip(wrong, p.word_confidence, strict=True) if c is not None]
    if not xs or len(set(ys)) < 2:
        raise ValueError(
            "fitting needs transcribed labels with word confidences, some words wrong and some right"
        )
    x, y = np.concatenate(xs), np.asarray(ys, dtype=int)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a feature that does not vary (rounding would leave 0)
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    return WordCalibration(
        FEATURES,
        tuple(mean.round(6).tolist()),
        tuple(scale.round(6).tolist()),
        tuple(model.coef_[0].round(6).tolist()),
        round(float(model.intercept_[0]), 6),
        len(y),
        int(y.sum()),
    )


__all__ = ["FEATURES", "WordCalibration", "fit_word_calibration", "read_transcribed", "word_features"]
