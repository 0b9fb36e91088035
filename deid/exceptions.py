from config.errors import ConflictError, DomainError


class ProfileInvalid(DomainError):
    """A de-identification profile cannot be created as asked; the message says why."""


class ArchiveConflict(ConflictError):
    """An archive object already exists under an output's key with other bytes: never overwritten."""
