"""The experiences API: read experiences and their results."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from tracking.selectors import workspaces_visible

from .models import Experience, Variant
from .results import experience_results


class VariantSerializer(serializers.ModelSerializer):
    isControl = serializers.BooleanField(source="is_control")

    class Meta:
        model = Variant
        fields = ["ref", "name", "weight", "isControl", "content"]


class ExperienceSerializer(serializers.ModelSerializer):
    friendlyId = serializers.CharField(source="friendly_id")
    trafficAllocation = serializers.IntegerField(source="traffic_allocation")
    goalEvent = serializers.CharField(source="goal_event")
    goalCondition = serializers.JSONField(source="goal_condition")
    goalWindowDays = serializers.IntegerField(source="goal_window_days")
    startsAt = serializers.DateTimeField(source="starts_at")
    endsAt = serializers.DateTimeField(source="ends_at")
    variants = VariantSerializer(many=True)

    class Meta:
        model = Experience
        fields = [
            "ref",
            "friendlyId",
            "name",
            "kind",
            "status",
            "trafficAllocation",
            "goalEvent",
            "goalCondition",
            "goalWindowDays",
            "startsAt",
            "endsAt",
            "variants",
        ]


class ByName(CursorPagination):
    ordering = ("name", "id")


class ExperienceViewSet(viewsets.ReadOnlyModelViewSet):
    """Experiences of the workspaces you belong to."""

    serializer_class = ExperienceSerializer
    pagination_class = ByName
    lookup_field = "friendly_id"
    lookup_url_kwarg = "friendly_id"

    def get_queryset(self):
        return Experience.objects.filter(
            workspace__in=workspaces_visible(self.request.user)
        ).prefetch_related("variants")

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def results(self, request, friendly_id=None):
        """Per variant: exposed and converted guests, rate, uplift with a 95% interval,
        p-value, chance to beat control; and the sample-ratio-mismatch check."""
        return Response(experience_results(self.get_object()))
