"""Per-trial keys for pseudonyms and identifier hashes.

Each trial's key is derived from the deployment's PSEUDONYM_KEY and the trial's
``key_id``: HMAC-SHA256(PSEUDONYM_KEY, purpose + key_id). Nothing secret is stored
in the database, so a copy of the database alone cannot reverse a hashed
patient ID by trying candidates. PSEUDONYM_KEY must never change once data
exists: every stored hash and pseudonymous UID depends on it.
"""

import hashlib
import hmac

from django.conf import settings


def trial_key(*, trial, purpose: str) -> bytes:
    """The trial's key for one purpose ("patient-id", "uid", "date-shift", ...)."""
    master = settings.PSEUDONYM_KEY.encode()
    return hmac.new(master, f"{purpose}:{trial.key_id}".encode(), hashlib.sha256).digest()


def patient_id_hash(*, trial, patient_id: str) -> str:
    """Keyed hash of a site's local patient ID (as in DICOM PatientID), stable within the trial."""
    normalized = patient_id.strip()
    if not normalized:
        raise ValueError("an empty patient ID cannot be matched")
    return hmac.new(trial_key(trial=trial, purpose="patient-id"), normalized.encode(), hashlib.sha256).hexdigest()
