"""Exceptions with messages a user can act on."""


class SpecError(ValueError):
    """A job specification or form value is invalid; the message names the field and the fix."""


class DatasetError(ValueError):
    """A dataset is unknown, missing on disk, or unreadable; the message says what to do."""


class JobError(RuntimeError):
    """A job cannot be found or cannot do what was asked (resume a running job, ...)."""
