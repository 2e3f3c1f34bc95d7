"""The teacher: resolving Whisper models offline and decoding batches with confidence."""

from .resolve import Teacher, TeacherNotFoundError, load_teacher

__all__ = ["Teacher", "TeacherNotFoundError", "load_teacher"]
