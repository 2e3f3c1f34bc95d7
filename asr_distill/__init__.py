"""asr_distill: pseudo-label speech with a Whisper teacher, filter, train a student, measure WER."""

__version__ = "0.1.0"

from .teacher import Teacher, TeacherNotFoundError, load_teacher  # noqa: E402


def run(config, **kwargs):
    """The whole pipeline from one config (a YAML path or a dict); see ``asr_distill.pipeline.run``."""
    from .pipeline import run as _run

    return _run(config, **kwargs)


__all__ = ["Teacher", "TeacherNotFoundError", "__version__", "load_teacher", "run"]
