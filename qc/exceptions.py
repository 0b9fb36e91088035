from config.errors import DomainError
from intake.exceptions import InvalidTransition


class QcError(DomainError):
    """A QC act cannot be carried out as asked; the message says why."""


class StudyAlreadyDecided(InvalidTransition):
    """Another analyst decided the study first (or it left the QC queue): the message says who and when."""
