"""Signals intake sends, always after the transaction that stored the object has committed.

Higher apps (de-identification) connect receivers that only enqueue their own
task; intake imports none of them.

- ``instance_received(sender=Instance, instance_id=int, series_id=int, study_id=int)``: one stored
  instance, raw bytes in quarantine, sent once per instance (and again for each instance of a study
  assigned from the unassigned inbox). Instances filed together (a C-STORE batch) send theirs one
  after another once their transaction has committed: a receiver that enqueues work per series sees
  the series id without a query.
- ``study_status_changed(sender=ImagingStudy, study_id=int, before=str, after=str)``: one move of a
  study's status machine (``intake.services.study_transition``), e.g. to ``deidentified`` once every
  instance is de-identified: QC's receiver starts the automated checks.
"""

from django.dispatch import Signal

instance_received = Signal()
study_status_changed = Signal()
