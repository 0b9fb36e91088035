"""Every illegal move in central reading raises one of these; the message says what to do instead."""

from config.errors import ConflictError, DomainError


class ReadsError(DomainError):
    """A reading act cannot be carried out as asked; the message says why."""


class ReaderNotQualified(ReadsError):
    """The reader lacks the criteria qualification, the training on the current charter, or the role."""


class NotEnoughReaders(ReadsError):
    """Fewer than two qualified, active readers: a timepoint cannot be given its two independent reads."""


class ReaderUnavailable(ReadsError):
    """The subject's reader left the pool: the trial manager reassigns the subject first."""


class TaskNotAvailable(ConflictError):
    """The task is not the caller's, was replaced (reassigned, re-read), or is already signed."""


class TimepointLocked(ConflictError):
    """An earlier timepoint of the subject (baseline first) is not signed yet by this reader."""


class InvalidAssessment(ReadsError):
    """The lesions do not make a valid assessment (e.g. the baseline breaks RECIST target selection)."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []


class ReadLocked(ConflictError):
    """A signed read is never edited: corrections make a new signed version with a reason."""


class ReasonRequired(ReadsError):
    """Reassignments, re-reads, corrections and deactivations must say why."""


class AdjudicationStateError(ConflictError):
    """The adjudication is resolved already, or not the caller's."""
