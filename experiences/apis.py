"""The experiences API: read experiences and their results."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from profiles.models import Segment
from profiles.rules import RuleError, property_condition_validate
from tracking.api_common import Pages, workspace_field, workspace_for_write
from tracking.selectors import workspaces_visible

from .models import Assignment, Experience, FlowExecution, Variant
from .results import experience_results
from .services import experience_save


class VariantSerializer(serializers.ModelSerializer):
    ref = serializers.UUIDField(
        required=False, help_text="give it to update a variant; leave it out to add one"
    )
    isControl = serializers.BooleanField(source="is_control", required=False, default=False)
    weight = serializers.IntegerField(min_value=0, max_value=1_000_000, default=50)

    class Meta:
        model = Variant
        fields = ["ref", "name", "weight", "isControl", "content"]
        # Name uniqueness is checked across the whole list in ExperienceSerializer.validate().
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
        # friendlyId uniqueness per workspace is checked in validate(), where it is known.
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["workspace"] = instance.workspace.portal_id
        return data

    def validate(self, data):
        instance = self.instance
        workspace = data["workspace"] = workspace_for_write(
            user=self.context["request"].user, given=data.get("workspace"), instance=instance
        )
        friendly_id = data.get("friendly_id")
        if instance is not None and friendly_id not in (None, instance.friendly_id):
            raise ValidationError({"friendlyId": "the friendlyId cannot change"})
        if (
            instance is None
            and Experience.objects.filter(workspace=workspace, friendly_id=friendly_id).exists()
        ):
            raise ValidationError(
                {"friendlyId": "this workspace already has an experience with this id"}
            )
        for key, label in (
            ("target_segments", "targetSegments"),
            ("exclusion_segments", "exclusionSegments"),
        ):
            foreign = [s.slug for s in data.get(key, []) if s.workspace_id != workspace.pk]
            if foreign:
                raise ValidationError({label: f"no segment {foreign[0]!r} in this workspace"})
        starts = data.get("starts_at", instance.starts_at if instance else None)
        ends = data.get("ends_at", instance.ends_at if instance else None)
        if starts and ends and ends <= starts:
            raise ValidationError({"endsAt": "endsAt must be after startsAt"})
        if "goal_condition" in data:
            _goal_condition_check(data["goal_condition"])
        if "variants" in data:
            _variants_check(data["variants"], instance)
        status = data.get("status", instance.status if instance else Experience.Status.DRAFT)
        variants = (
            data.get("variants")
            if "variants" in data
            else (list(instance.variants.values("weight")) if instance else [])
        )
        if status == Experience.Status.LIVE and sum(v.get("weight", 50) for v in variants) <= 0:
            raise ValidationError(
                {"status": "a live experience needs variants whose weights add up to more than 0"}
            )
        return data

    def create(self, validated_data):
        return experience_save(experience=Experience(), data=validated_data)

    def update(self, instance, validated_data):
        return experience_save(experience=instance, data=validated_data)


def _goal_condition_check(condition) -> None:
    if condition is None:
        return
    try:
        property_condition_validate(condition)
    except RuleError as error:
        raise ValidationError(
            {"goalCondition": {"path": error.path, "message": error.message}}
        ) from None


def _variants_check(variants: list[dict], instance: Experience | None) -> None:
    current = {
        ref: {"name": name, "is_control": is_control}
        for ref, name, is_control in (
            instance.variants.values_list("ref", "name", "is_control") if instance else []
        )
    }

    def effective(item: dict, key: str):
        return item[key] if key in item else current.get(item.get("ref"), {}).get(key)

    names = [effective(v, "name") for v in variants]
    if not all(names):
        raise ValidationError({"variants": "a new variant needs a name"})
    if len(set(names)) != len(names):
        raise ValidationError({"variants": "variant names must differ"})
    if sum(1 for v in variants if effective(v, "is_control")) > 1:
        raise ValidationError({"variants": "at most one variant is the control"})
    unknown = [str(v["ref"]) for v in variants if "ref" in v and v["ref"] not in current]
    if unknown:
        raise ValidationError({"variants": f"no variant {unknown[0]} in this experience"})
    if instance is not None:
        dropped = instance.variants.exclude(ref__in=[v["ref"] for v in variants if "ref" in v])
        in_use = dropped.filter(
            Exists(Assignment.objects.filter(variant=OuterRef("pk")))
            | Exists(FlowExecution.objects.filter(variant=OuterRef("pk")))
        ).values_list("name", flat=True)
        if in_use:
            raise ValidationError(
                {"variants": f"variant {in_use[0]!r} has guests assigned; set its weight to 0"}
            )


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
    differenceLow = serializers.FloatField(allow_null=True)
    differenceHigh = serializers.FloatField(allow_null=True)
    pValue = serializers.FloatField(allow_null=True, help_text="two-sided, two-proportion z-test")
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

    def get_queryset(self):
        return (
            Experience.objects.filter(workspace__in=workspaces_visible(self.request.user))
            .select_related("workspace")
            .prefetch_related("variants", "target_segments", "exclusion_segments")
        )

    @extend_schema(responses=ResultsSerializer)
    @action(detail=True, methods=["get"])
    def results(self, request, friendly_id=None):
        """Per variant: exposed and converted guests, rate, uplift with a 95% interval,
        p-value, chance to beat control; and the sample-ratio-mismatch check."""
        return Response(experience_results(self.get_object()))
