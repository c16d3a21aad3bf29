"""Exceptions with messages a user can act on.

`StudioError` is the base of every error that is the user's to fix: a bad value, an unknown
name, a job in the wrong state. The web app and the CLI show its message as it is; any other
exception is a bug, which they log with its traceback. The subclasses keep their historical
ValueError/RuntimeError bases, so `except ValueError` code keeps working. This module imports
nothing else, so the web app can import it without torch.
"""


class StudioError(Exception):
    """An error the user can fix; the message names the field or thing and what would work."""


class SpecError(StudioError, ValueError):
    """A job specification or form value is invalid; the message names the field and the fix."""


class DatasetError(StudioError, ValueError):
    """A dataset is unknown, missing on disk, or unreadable; the message says what to do."""


class JobError(StudioError, RuntimeError):
    """A job cannot be found or cannot do what was asked (resume a running job, ...)."""
