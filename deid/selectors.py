"""De-identification reads, scoped by user: 404 for missing and forbidden alike."""

from collections.abc import Iterator

from django.shortcuts import get_object_or_404

from trials.models import Trial
from trials.permissions import Perm, require

from .models import DeidProfile, DeidRecord

MAPPING_COLUMNS = ["subject_code", "patient_id_hash", "study_uid_hash", "study_uid", "series_uid_hash",
                   "series_uid", "sop_uid_hash", "sop_uid", "profile_version", "deid_sha256"]


def trial_get_for_mapping(*, user, trial_id: int) -> Trial:
    """The trial whose pseudonym mapping the user may export (trial managers)."""
    trial = get_object_or_404(Trial, pk=trial_id)
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    return trial


def profile_list_for_user(*, user, trial: Trial):
    """The trial's profile versions, newest first (trial managers)."""
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    return DeidProfile.objects.filter(trial=trial).select_related("created_by").order_by("-version")


def mapping_rows(*, user, trial: Trial) -> Iterator[dict]:
    """Original identifier hashes -> pseudonyms for every released instance of the trial (trial managers).

    Hashes are the keyed ones intake stores (no original identifier exists in the database); pseudonyms
    are the subject code and the ``2.25.`` UIDs written into the archived files.
    """
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    records = (DeidRecord.objects.filter(instance__study__trial=trial, outcome=DeidRecord.Outcome.RELEASED)
               .select_related("instance__study__subject", "instance__series", "profile")
               .order_by("instance__study__subject__code", "instance__study_id", "instance__series_id",
                         "instance_id"))
    for record in records.iterator(chunk_size=2000):
        instance = record.instance
        study = instance.study
        yield {"subject_code": study.subject.code if study.subject_id else "",
               "patient_id_hash": study.patient_id_hash, "study_uid_hash": study.study_uid_hash,
               "study_uid": record.study_uid, "series_uid_hash": instance.series.series_uid_hash,
               "series_uid": record.series_uid, "sop_uid_hash": instance.sop_uid_hash, "sop_uid": record.sop_uid,
               "profile_version": record.profile.version, "deid_sha256": record.output_sha256}
