from config.errors import DomainError
from intake.exceptions import InvalidTransition


class QcError(DomainError):
    """A QC act cannot be carried out as asked; the message says why."""


class StudyAlreadyDecided(InvalidTransition):
    """Another analyst decided the study first (or it left the QC queue): the message says who and when."""


class QueryStateError(QcError):
    """The query's status does not allow this act (answering a closed query, closing it twice)."""

    status_code = 409
