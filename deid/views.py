"""De-identification pages: the pseudonym mapping download for trial managers."""

import csv

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from .selectors import MAPPING_COLUMNS, trial_get_for_mapping
from .services import mapping_export


@login_required
@require_GET
def mapping_csv(request, trial_id: int):
    """CSV of original identifier hashes -> pseudonyms (subject code, UIDs); each download is audited."""
    trial = trial_get_for_mapping(user=request.user, trial_id=trial_id)
    rows = mapping_export(user=request.user, trial=trial)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.protocol_number}-pseudonym-mapping.csv"'
    response["Cache-Control"] = "no-store"
    writer = csv.DictWriter(response, fieldnames=MAPPING_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return response
