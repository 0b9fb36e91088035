from config.errors import ConflictError, DomainError


class IntakeError(DomainError):
    """Base class for intake refusals a user can act on."""


class SubmissionRefused(IntakeError):
    """A batch cannot be opened as asked; the message says why."""


class InvalidTransition(ConflictError, IntakeError):
    """A study or instance is not in a state that allows this change."""
