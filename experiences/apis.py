"""The experiences API: read experiences and their results."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
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

from .models import Experience, Variant
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


class ExperienceSerializer(serializers.ModelSerializer):
    """An experience with its variants.

    Writing ``variants`` sets the whole list: a variant given with its ``ref`` is updated, one
    without is added, and one left out is removed unless guests were already assigned to it
    (set its weight to 0 instead). The ``friendlyId`` cannot change once created: TRACKING
    events and segment rules refer to it.
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
    goalEvent = serializers.CharField(
        source="goal_event", max_length=255, required=False, allow_blank=True
    )
    goalCondition = serializers.JSONField(source="goal_condition", required=False, allow_null=True)
    goalWindowDays = serializers.IntegerField(
        source="goal_window_days", min_value=1, max_value=365, required=False
    )
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
            "goalEvent",
            "goalCondition",
            "goalWindowDays",
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
            (name for name, f in self.fields.items() if f.source == error.field),
            api_settings.NON_FIELD_ERRORS_KEY,
        )
        if error.path:
            return {field: {"path": error.path, "message": error.message}}
        return {field: [error.message]}


class VariantResultSerializer(serializers.Serializer):
    """One variant's results (for the schema; the service builds the dict)."""

    ref = serializers.UUIDField()
    name = serializers.CharField()
    isControl = serializers.BooleanField()
    weight = serializers.IntegerField()
    exposed = serializers.IntegerField(help_text="guests exposed (merged guests count once)")
    converted = serializers.IntegerField(help_text="exposed guests with a goal event after it")
    conversionRate = serializers.FloatField()
    uplift = serializers.FloatField(allow_null=True, help_text="relative to control")
    upliftLow = serializers.FloatField(allow_null=True, help_text="95% interval, low end")
    upliftHigh = serializers.FloatField(allow_null=True, help_text="95% interval, high end")
    difference = serializers.FloatField(allow_null=True, help_text="absolute, variant - control")
    pValue = serializers.FloatField(
        allow_null=True, help_text="two-sided, always valid (sequential test)"
    )
    chanceToBeatControl = serializers.FloatField(allow_null=True)


class GoalSerializer(serializers.Serializer):
    event = serializers.CharField()
    condition = serializers.JSONField(allow_null=True)
    windowDays = serializers.IntegerField()


class SampleRatioSerializer(serializers.Serializer):
    chiSquare = serializers.FloatField()
    pValue = serializers.FloatField()
    mismatch = serializers.BooleanField(help_text="p < 0.001: the split differs from the weights")


class ResultsSerializer(serializers.Serializer):
    friendlyId = serializers.CharField()
    goal = GoalSerializer()
    variants = VariantResultSerializer(many=True)
    sampleRatio = SampleRatioSerializer()


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
            "variants", "target_segments", "exclusion_segments"
        )

    @extend_schema(responses=ResultsSerializer)
    @action(detail=True, methods=["get"])
    def results(self, request, friendly_id=None):
        """Per variant: exposed and converted guests, rate, uplift with a 95% interval,
        p-value, chance to beat control; and the sample-ratio-mismatch check."""
        return Response(experience_results(self.get_object()))
