"""The exception hierarchy of secure-mor: one base class, one subclass per kind of user-facing failure.

The CLI turns every ``SecureMorError`` into a one-line message and a non-zero exit, so a message must
say what was wrong, where (file, field, column), what was expected and, where it helps, what to do.
"""


class SecureMorError(Exception):
    """Base class of every error that secure-mor raises on purpose."""

    exit_code: int = 2
    """The CLI's exit status for this error: 2 = unusable input (the default), 1 = a failed check or run."""


class ConfigError(SecureMorError):
    """A configuration file or value is missing, malformed or fails a validation rule."""


class DataError(SecureMorError):
    """A dataset cannot be found, read or mapped onto the VQA schema."""


class ModelError(SecureMorError):
    """A model, tokenizer or processor cannot be built, loaded or saved."""
