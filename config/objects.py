"""Write-once objects in a storage (quarantine, archive): an object, once stored, is never overwritten.

A retried write of the same bytes finds them there and keeps them; other bytes under the key are a conflict,
never replaced. Used by de-identification (released and held outputs) and by reads' measurement reports.
"""

import hashlib

from django.core.files.base import ContentFile


class ObjectConflict(Exception):
    """The key already holds other bytes."""


def sha256_of(storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open(key, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def store_once(storage, key: str, data: bytes, sha256: str) -> str:
    """Write a new object under ``key``; an identical one already there (an earlier attempt) is kept.
    Raises ObjectConflict when other bytes are there: nothing under a key is ever deleted or replaced here."""
    if storage.exists(key):
        if sha256_of(storage, key) != sha256:
            raise ObjectConflict(f"{key} already holds other bytes; stored objects are never overwritten")
        return key
    stored = storage.save(key, ContentFile(data, name=key))
    if stored != key:  # a concurrent writer got there first and the storage picked another name
        storage.delete(stored)
        return store_once(storage, key, data, sha256)
    return key
