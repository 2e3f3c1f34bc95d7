"""asr_distill: pseudo-label speech with a Whisper teacher, filter, train a student, measure WER."""

__version__ = "0.1.0"

from .teacher import Teacher, TeacherNotFoundError, load_teacher  # noqa: E402

__all__ = ["Teacher", "TeacherNotFoundError", "__version__", "load_teacher"]
