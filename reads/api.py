"""REST API of central reading: the reader's worklist, a task with its reads, save a draft, sign (readers);
an adjudication with reads A and B, resolve it (adjudicators). Everything goes through reads.selectors,
where blinding is enforced, and reads.services; nothing here adds a field the selectors do not give."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.exceptions import SignatureError
from trials.selectors import trial_get_for_user

from . import selectors, services
from .models import ReadTask


class ReadStudyOutput(serializers.Serializer):
    study_uid = serializers.CharField(help_text="pseudonymous (de-identified) Study Instance UID")
    procedure = serializers.CharField()
    modality = serializers.CharField()
    scan_date = serializers.DateField(allow_null=True, help_text="shifted, as the de-identified images carry it")


class ReadOutput(serializers.Serializer):
    version = serializers.IntegerField()
    status = serializers.CharField(help_text="draft, signed, corrected or superseded")
    lesions = serializers.JSONField(help_text="the engine's input for this timepoint (see reads.recist)")
    responses = serializers.JSONField(help_text="the engine's output when signed; {} for a draft")
    overall = serializers.CharField(allow_blank=True)
    signed_at = serializers.DateTimeField(allow_null=True)
    correction_reason = serializers.CharField(allow_blank=True)


class ReadWorklistRowOutput(serializers.Serializer):
    task_id = serializers.IntegerField()
    reading_id = serializers.CharField(help_text="the subject's reading ID (reads.blinding), never its code")
    timepoint = serializers.CharField()
    timepoint_label = serializers.CharField()
    scan_date = serializers.DateField(help_text="shifted")
    status = serializers.CharField(help_text="open, in_progress or signed")
    locked = serializers.BooleanField()
    lock_reason = serializers.CharField(allow_blank=True, help_text="what to sign first")
    position = serializers.IntegerField(help_text="the subject's place in the recorded random order")
    stale_because = serializers.CharField(allow_blank=True, help_text="why the signed responses are out of date: "
                                          "an earlier timepoint was signed again since; correct this read")


class ReadEarlierOutput(serializers.Serializer):
    timepoint = serializers.CharField()
    read = ReadOutput()


class ReadTaskOutput(serializers.Serializer):
    task_id = serializers.IntegerField()
    reading_id = serializers.CharField(help_text="the subject's reading ID (reads.blinding)")
    timepoint = serializers.CharField()
    timepoint_label = serializers.CharField()
    scan_date = serializers.DateField()
    status = serializers.CharField()
    is_baseline = serializers.BooleanField()
    studies = ReadStudyOutput(many=True)
    current = ReadOutput(allow_null=True)
    versions = ReadOutput(many=True)
    earlier = ReadEarlierOutput(many=True, help_text="your own signed earlier timepoints of this subject")
    stale_because = serializers.CharField(allow_blank=True, help_text="why the signed responses are out of date "
                                          "('' when current): correct this read to recompute them")


def _task(view) -> dict:
    data = {**view.__dict__, "earlier": [{"timepoint": tp, "read": r} for tp, r in view.earlier]}
    return ReadTaskOutput(data).data


@extend_schema(tags=["reads"], responses=ReadWorklistRowOutput(many=True))
class ReadsWorklistApi(APIView):
    def get(self, request, trial_id: int):
        """The caller's read tasks in the trial, subjects in their recorded random order (readers)."""
        trial = trial_get_for_user(user=request.user, trial_id=trial_id)
        return Response(ReadWorklistRowOutput(selectors.worklist_for(user=request.user, trial=trial), many=True).data)


@extend_schema(tags=["reads"], responses=ReadTaskOutput)
class ReadTaskApi(APIView):
    def get(self, request, task_id: int):
        """One of the caller's tasks with its reads. 409 while an earlier timepoint is unsigned (the message
        says which); 404 for anyone else's task."""
        return Response(_task(selectors.task_for_reader(user=request.user, task_id=task_id)))


class ReadDraftInput(serializers.Serializer):
    lesions = serializers.JSONField(help_text="baseline: {targets: [...], non_targets: [...]}; follow-up: "
                                              "{targets: {...}, non_targets: {...} or non_target, new_lesions}")

    def validate_lesions(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("give the lesions as an object")
        return value


@extend_schema(tags=["reads"], request=ReadDraftInput, responses=ReadTaskOutput)
class ReadDraftSaveApi(APIView):
    def post(self, request, task_id: int):
        """Open the task if needed and save the lesions as its unsigned draft (readers). 409 when signed or
        locked."""
        task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
        data = ReadDraftInput(data=request.data)
        data.is_valid(raise_exception=True)
        if task.status == ReadTask.Status.OPEN:
            task = services.task_open(task=task, user=request.user)
        services.read_save_draft(task=task, user=request.user, lesions=data.validated_data["lesions"])
        return Response(_task(selectors.task_for_reader(user=request.user, task_id=task_id)))


class ReadSignInput(serializers.Serializer):
    password = serializers.CharField(trim_whitespace=False, help_text="re-entered: the signature's "
                                                                      "re-authentication")


@extend_schema(tags=["reads"], request=ReadSignInput, responses=ReadTaskOutput)
class ReadSignApi(APIView):
    def post(self, request, task_id: int):
        """Sign the saved draft: the engine computes the responses, the signature records the printed name,
        time and meaning, and the read is locked. A wrong password signs nothing (400)."""
        task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
        data = ReadSignInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.read_sign(task=task, user=request.user, password=data.validated_data["password"],
                               request=request)
        except SignatureError as exc:
            raise serializers.ValidationError({"password": [str(exc)]}) from exc
        return Response(_task(selectors.task_for_reader(user=request.user, task_id=task_id)))


class AdjudicationSlotReadOutput(serializers.Serializer):
    timepoint = serializers.CharField()
    scan_date = serializers.DateField()
    read = ReadOutput()


class AdjudicationSlotReadsOutput(serializers.Serializer):
    A = AdjudicationSlotReadOutput(many=True)
    B = AdjudicationSlotReadOutput(many=True)


class AdjudicationOutput(serializers.Serializer):
    adjudication_id = serializers.IntegerField()
    reading_id = serializers.CharField(help_text="the subject's reading ID (reads.blinding)")
    status = serializers.CharField(help_text="open or resolved")
    triggers = serializers.JSONField(help_text='[{"kind": "overall"|"bor"|"pd_date", "visit", "A", "B"}]')
    visits = serializers.ListField(child=serializers.CharField())
    reads = AdjudicationSlotReadsOutput(help_text="reads A and B; who made them is never given")
    selected = serializers.CharField(allow_blank=True)
    rationale = serializers.CharField(allow_blank=True)


def _adjudication(view) -> dict:
    reads = {slot: [{"timepoint": tp, "scan_date": day, "read": r} for tp, day, r in rows]
             for slot, rows in view.reads.items()}
    return AdjudicationOutput({**view.__dict__, "reads": reads}).data


@extend_schema(tags=["reads"], responses=AdjudicationOutput(many=True))
class AdjudicationListApi(APIView):
    def get(self, request, trial_id: int):
        """The caller's adjudications in the trial, open first (adjudicators)."""
        trial = trial_get_for_user(user=request.user, trial_id=trial_id)
        return Response([_adjudication(v) for v in selectors.adjudication_list_for(user=request.user, trial=trial)])


@extend_schema(tags=["reads"], responses=AdjudicationOutput)
class AdjudicationApi(APIView):
    def get(self, request, adj_id: int):
        """An adjudication assigned to the caller: triggers and reads A and B side by side."""
        return Response(_adjudication(selectors.adjudication_for(user=request.user, adj_id=adj_id)))


class AdjudicationResolveInput(serializers.Serializer):
    selected = serializers.ChoiceField(choices=["A", "B"])
    rationale = serializers.CharField(max_length=5000)
    password = serializers.CharField(trim_whitespace=False)


@extend_schema(tags=["reads"], request=AdjudicationResolveInput, responses=AdjudicationOutput)
class AdjudicationResolveApi(APIView):
    def post(self, request, adj_id: int):
        """Select read A or B with a rationale and sign: the selected read becomes the BICR result. A wrong
        password signs nothing (400); 409 when already resolved."""
        adj = selectors.adjudication_get_for_adjudicator(user=request.user, adj_id=adj_id)
        data = AdjudicationResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.adjudication_resolve(adjudication=adj, user=request.user, request=request, **data.validated_data)
        except SignatureError as exc:
            raise serializers.ValidationError({"password": [str(exc)]}) from exc
        return Response(_adjudication(selectors.adjudication_for(user=request.user, adj_id=adj_id)))
