"""The client package's errors: a refused training run, an unusable reward model, a refused task."""

from __future__ import annotations

from secure_mor.errors import SecureMorError


class ClientError(SecureMorError):
    """Base class of the client's errors."""


class BudgetExceededError(ClientError):
    """A training run would take the client past its total privacy budget; nothing was trained."""

    exit_code = 1


class RewardModelError(ClientError):
    """A reward model cannot be built, trained, saved or loaded, or produced unusable scores."""

    exit_code = 1


class TaskRefusedError(ClientError):
    """The scoring agent refuses a task (too large, malformed) or a score it produced (not in [0, 1])."""

    exit_code = 1
