"""The teacher's errors a user can act on, importable without torch (the CLI catches them)."""


class TeacherNotFoundError(LookupError):
    """No model could be resolved from the given name or path."""
