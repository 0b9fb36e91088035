"""Intake routes. Two lists kept apart so each part of intake owns its own lines."""

from django.urls import path  # noqa: F401  (used by the lists below)

# web upload portal (intake.views.upload)
from .views import upload  # kept beside its list so each part of intake owns its lines

upload_patterns: list = [
    path("upload/", upload.upload_start, name="upload"),
    path("upload/<int:submission_id>/", upload.submission_detail, name="upload-submission"),
    path("upload/<int:submission_id>/files/", upload.submission_file, name="upload-file"),
    path("upload/<int:submission_id>/finish/", upload.submission_finish, name="upload-finish"),
]

# unassigned inbox, expected vs. received (intake.views.tracking)
from .views import tracking  # noqa: E402  (kept beside its list so each part of intake owns its lines)

tracking_patterns: list = [
    path("intake/inbox/", tracking.inbox, name="intake-inbox"),
    path("intake/inbox/<int:study_id>/assign/", tracking.inbox_assign, name="intake-inbox-assign"),
    path("intake/inbox/<int:study_id>/reject/", tracking.inbox_reject, name="intake-inbox-reject"),
    path("intake/expected/", tracking.expected, name="intake-expected"),
]

# DICOM senders the C-STORE gateway accepts (intake.views.peers)
from .views import peers  # noqa: E402  (kept beside its list so each part of intake owns its lines)

peers_patterns: list = [
    path("intake/senders/", peers.peers, name="intake-peers"),
    path("intake/trials/<int:trial_id>/senders/", peers.peers_trial, name="intake-peers-trial"),
    path("intake/trials/<int:trial_id>/senders/register/", peers.peer_register, name="intake-peer-register"),
    path("intake/senders/<int:peer_id>/edit/", peers.peer_edit, name="intake-peer-edit"),
    path("intake/senders/<int:peer_id>/active/", peers.peer_set_active, name="intake-peer-active"),
]

# what arrived through every door, with the reasons for refusals (intake.views.submissions)
from .views import submissions  # noqa: E402  (kept beside its list so each part of intake owns its lines)

submissions_patterns: list = [
    path("intake/submissions/", submissions.submission_list, name="intake-submissions"),
    path("intake/submissions/<int:submission_id>/", submissions.submission_detail, name="intake-submission"),
]

urlpatterns = upload_patterns + tracking_patterns + peers_patterns + submissions_patterns

# REST API under /api/ (intake.api)
from . import api  # noqa: E402

api_urlpatterns: list = [
    path("intake/inbox/", api.InboxListApi.as_view(), name="api-intake-inbox"),
    path("intake/studies/<int:study_id>/assign/", api.StudyAssignApi.as_view(), name="api-intake-study-assign"),
    path("intake/studies/<int:study_id>/reject/", api.StudyRejectApi.as_view(), name="api-intake-study-reject"),
    path("intake/trials/<int:trial_id>/expected/", api.ExpectedListApi.as_view(), name="api-intake-expected"),
    path("intake/trials/<int:trial_id>/senders/", api.GatewayPeerListApi.as_view(), name="api-intake-peer-list"),
    path("intake/senders/<int:peer_id>/", api.GatewayPeerDetailApi.as_view(), name="api-intake-peer-detail"),
    path("intake/submissions/", api.SubmissionListApi.as_view(), name="api-intake-submission-list"),
    path("intake/submissions/<int:submission_id>/", api.SubmissionDetailApi.as_view(),
         name="api-intake-submission-detail"),
]

# DICOMweb under /dicomweb/ (intake.stow); no trailing slash, as DICOMweb clients build the URLs
from . import stow  # noqa: E402

dicomweb_urlpatterns: list = [
    path("studies", stow.StowApi.as_view(), name="dicomweb-stow"),
    path("studies/<str:study_uid>", stow.StowStudyApi.as_view(), name="dicomweb-stow-study"),
]
