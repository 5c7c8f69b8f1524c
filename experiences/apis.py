"""The experiences API: read experiences and their results."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings

from config.lib.api import Pages
from profiles.models import Segment
from tracking.api_common import (
    WorkspaceScopedViewSetMixin,
    workspace_field,
    workspace_for_write,
)

from .models import Experience, Metric, Variant
from .results import experience_results
from .services import ExperienceRuleError, experience_save


class VariantSerializer(serializers.ModelSerializer):
    ref = serializers.UUIDField(
        required=False, help_text="give it to update a variant; leave it out to add one"
    )
    isControl = serializers.BooleanField(source="is_control", required=False, default=False)
    weight = serializers.IntegerField(min_value=0, max_value=1_000_000, default=50)

    class Meta:
        model = Variant
        fields = ["ref", "name", "weight", "isControl", "content"]
        # Name uniqueness is checked across the whole list by services.experience_validate().
        validators = []


class MetricSerializer(serializers.ModelSerializer):
    """What the experience is judged on. A conversion: did the guest have ``event`` (matching
    ``condition``) within ``windowDays`` after first exposure; a count: how many; a sum: the
    total of the numeric ``property``. A guardrail says which way it must not move
    (``guardrailDirection``) and by how many percent at most (``guardrailThreshold``)."""

    ref = serializers.UUIDField(
        required=False, help_text="give it to update a metric; leave it out to add one"
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event = serializers.CharField(max_length=255, required=False)
    condition = serializers.JSONField(required=False, allow_null=True)
    property = serializers.CharField(max_length=255, required=False, allow_blank=True)
    windowDays = serializers.IntegerField(
        source="window_days", min_value=1, max_value=365, required=False
    )
    guardrailDirection = serializers.ChoiceField(
        source="guardrail_direction",
        choices=[("", "none"), *Metric.Direction.choices],
        required=False,
        allow_blank=True,
    )
    guardrailThreshold = serializers.FloatField(
        source="guardrail_threshold",
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1000,
        help_text="percent",
    )

    class Meta:
        model = Metric
        fields = [
            "ref",
            "name",
            "role",
            "kind",
            "event",
            "condition",
            "property",
            "windowDays",
            "guardrailDirection",
            "guardrailThreshold",
        ]
        extra_kwargs = {"role": {"required": False}, "kind": {"required": False}}


class ExperienceSerializer(serializers.ModelSerializer):
    """An experience with its variants.

    Writing ``variants`` sets the whole list: a variant given with its ``ref`` is updated, one
    without is added, and one left out is removed unless guests were already assigned to it
    (set its weight to 0 instead). Writing ``metrics`` sets the whole list the same way (one
    of them is the primary). The ``friendlyId`` cannot change once created: TRACKING events
    and segment rules refer to it.
    """

    workspace = workspace_field()
    friendlyId = serializers.SlugField(source="friendly_id", max_length=100)
    trafficAllocation = serializers.IntegerField(
        source="traffic_allocation", min_value=0, max_value=100, required=False
    )
    targetSegments = serializers.SlugRelatedField(
        source="target_segments",
        slug_field="slug",
        many=True,
        required=False,
        queryset=Segment.objects.all(),
    )
    exclusionSegments = serializers.SlugRelatedField(
        source="exclusion_segments",
        slug_field="slug",
        many=True,
        required=False,
        queryset=Segment.objects.all(),
    )
    sequentialTesting = serializers.BooleanField(source="sequential_testing", required=False)
    cuped = serializers.BooleanField(required=False)
    correction = serializers.ChoiceField(choices=Experience.Correction.choices, required=False)
    liveSince = serializers.DateTimeField(source="live_since", read_only=True)
    metrics = MetricSerializer(many=True, required=False)
    startsAt = serializers.DateTimeField(source="starts_at", required=False, allow_null=True)
    endsAt = serializers.DateTimeField(source="ends_at", required=False, allow_null=True)
    variants = VariantSerializer(many=True, required=False)

    class Meta:
        model = Experience
        fields = [
            "ref",
            "workspace",
            "friendlyId",
            "name",
            "kind",
            "status",
            "trafficAllocation",
            "targetSegments",
            "exclusionSegments",
            "metrics",
            "sequentialTesting",
            "cuped",
            "correction",
            "liveSince",
            "startsAt",
            "endsAt",
            "variants",
        ]
        # friendlyId uniqueness per workspace is checked by services.experience_validate().
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["workspace"] = instance.workspace.portal_id
        return data

    def validate(self, data):
        data["workspace"] = workspace_for_write(
            user=self.context["request"].user, given=data.get("workspace"), instance=self.instance
        )
        return data

    def create(self, validated_data):
        return self._save(Experience(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)

    def _save(self, experience: Experience, data: dict) -> Experience:
        try:
            return experience_save(experience=experience, data=data)
        except ExperienceRuleError as error:
            raise ValidationError(self._error(error)) from None

    def _error(self, error: ExperienceRuleError) -> dict:
        """The service's refusal as this API's 400: the message under the field's API name."""
        field = next(
            (name for name, f in self.fields.items() if error.field and f.source == error.field),
            api_settings.NON_FIELD_ERRORS_KEY,
        )
        if error.path:
            return {field: {"path": error.path, "message": error.message}}
        return {field: [error.message]}


class MethodSerializer(serializers.Serializer):
    alpha = serializers.FloatField()
    test = serializers.CharField()
    sequential = serializers.BooleanField(help_text="always-valid inference: safe to peek")
    sequentialMethod = serializers.CharField()
    cuped = serializers.BooleanField()
    cupedWindowDays = serializers.IntegerField(help_text="the pre-exposure covariate's window")
    correction = serializers.ChoiceField(choices=Experience.Correction.choices)
    correctionName = serializers.CharField()
    bayesian = serializers.CharField()


class ExposedVariantSerializer(serializers.Serializer):
    ref = serializers.UUIDField()
    name = serializers.CharField()
    isControl = serializers.BooleanField()
    weight = serializers.IntegerField()
    exposed = serializers.IntegerField(help_text="guests with a TRACKING event of it")


class SampleRatioSerializer(serializers.Serializer):
    chiSquare = serializers.FloatField()
    pValue = serializers.FloatField()
    mismatch = serializers.BooleanField(help_text="p < 0.001: the split differs from the weights")


class StartSerializer(serializers.Serializer):
    liveSince = serializers.DateTimeField(allow_null=True)
    firstExposureAt = serializers.DateTimeField(allow_null=True)
    exposedBeforeLive = serializers.IntegerField()
    ok = serializers.BooleanField(help_text="exposures began when it went live")
    message = serializers.CharField(allow_blank=True)


class MetricVariantSerializer(serializers.Serializer):
    """One variant on one metric. Relative figures are fractions (0.1 = +10 %)."""

    ref = serializers.UUIDField()
    name = serializers.CharField()
    isControl = serializers.BooleanField()
    exposed = serializers.IntegerField()
    total = serializers.FloatField(help_text="conversions, events, or the property's sum")
    mean = serializers.FloatField(help_text="conversion rate, or per exposed guest")
    uplift = serializers.FloatField(allow_null=True, help_text="relative to control")
    upliftLow = serializers.FloatField(allow_null=True, help_text="95 % interval, low end")
    upliftHigh = serializers.FloatField(allow_null=True, help_text="95 % interval, high end")
    difference = serializers.FloatField(allow_null=True, help_text="absolute, variant - control")
    pValue = serializers.FloatField(allow_null=True, help_text="two-sided")
    pValueAdjusted = serializers.FloatField(
        allow_null=True, help_text="after the experience's correction (not for guardrails)"
    )
    significant = serializers.BooleanField(
        help_text="adjusted p < alpha; for a guardrail: breached"
    )
    chanceToBeatControl = serializers.FloatField(allow_null=True)
    expectedLoss = serializers.FloatField(allow_null=True, help_text="relative, if shipped")
    cupedApplied = serializers.BooleanField()
    guardrail = serializers.ChoiceField(
        choices=["safe", "pending", "breached"], allow_null=True, required=False
    )
    guestsNeeded = serializers.IntegerField(allow_null=True, required=False)
    note = serializers.CharField(allow_blank=True, help_text="why figures are missing")


class VariantPointSerializer(serializers.Serializer):
    ref = serializers.UUIDField()
    exposed = serializers.IntegerField()
    mean = serializers.FloatField()
    uplift = serializers.FloatField(allow_null=True, required=False)
    upliftLow = serializers.FloatField(allow_null=True, required=False)
    upliftHigh = serializers.FloatField(allow_null=True, required=False)


class DayPointSerializer(serializers.Serializer):
    date = serializers.DateField()
    variants = VariantPointSerializer(many=True)


class MetricResultSerializer(serializers.Serializer):
    ref = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Metric.Role.choices)
    kind = serializers.ChoiceField(choices=Metric.Kind.choices)
    event = serializers.CharField()
    condition = serializers.JSONField(allow_null=True)
    conditionText = serializers.CharField(allow_blank=True)
    property = serializers.CharField(allow_blank=True)
    windowDays = serializers.IntegerField()
    guardrailDirection = serializers.CharField(allow_null=True)
    guardrailThreshold = serializers.FloatField(allow_null=True)
    variants = MetricVariantSerializer(many=True)
    daily = DayPointSerializer(many=True, required=False, help_text="with ?daily=1: cumulative")


class VerdictSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["waiting", "srm", "guardrail", "no_metric", "winner", "loser", "no_difference"]
    )
    tone = serializers.ChoiceField(choices=["good", "bad", "warn", "info"])
    headline = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
    leader = serializers.CharField(required=False)


class ExposureVariantDaySerializer(serializers.Serializer):
    ref = serializers.UUIDField()
    new = serializers.IntegerField()
    exposed = serializers.IntegerField(help_text="cumulative")


class ExposureDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    variants = ExposureVariantDaySerializer(many=True)


class ResultsSerializer(serializers.Serializer):
    friendlyId = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Experience.Status.choices)
    method = MethodSerializer()
    variants = ExposedVariantSerializer(many=True)
    exposed = serializers.IntegerField()
    sampleRatio = SampleRatioSerializer()
    start = StartSerializer()
    metrics = MetricResultSerializer(many=True)
    verdict = VerdictSerializer()
    exposuresDaily = ExposureDaySerializer(many=True, required=False, help_text="with ?daily=1")


class ByName(Pages):
    ordering = ("name", "id")


class ExperienceViewSet(
    WorkspaceScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Experiences of the workspaces you belong to, with their variants."""

    serializer_class = ExperienceSerializer
    pagination_class = ByName
    lookup_field = "friendly_id"
    lookup_url_kwarg = "friendly_id"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def base_queryset(self):
        return Experience.objects.select_related("workspace").prefetch_related(
            "variants", "metrics", "target_segments", "exclusion_segments"
        )

    @extend_schema(
        responses=ResultsSerializer,
        parameters=[
            OpenApiParameter(
                "daily", bool, description="1 adds the daily cumulative series", required=False
            )
        ],
    )
    @action(detail=True, methods=["get"])
    def results(self, request, friendly_id=None):
        """Every metric per variant against control: uplift with its interval, p-value (and
        corrected), chance to beat control, expected loss; the sample-ratio and start checks,
        the verdict in words and the method used; ``?daily=1`` adds the series over time."""
        daily = request.query_params.get("daily", "")
        if daily not in ("", "0", "1", "true", "false"):
            raise ValidationError({"daily": ["use 1 or 0"]})
        return Response(
            experience_results(self.get_object(), daily=daily in ("1", "true")),
        )
