"""The segments API: define segments, read their members, export them."""

from __future__ import annotations

from django.db import transaction
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from config.lib.api import Pages
from tracking.api_common import (
    WorkspaceScopedViewSetMixin,
    workspace_field,
    workspace_for_write,
)

from .apis import GuestSerializer
from .exports import export_csv, export_ndjson, traits_param
from .models import Segment, SegmentMembership
from .rules import RuleError
from .segments import segment_slug_follow, segment_validate


class SegmentSerializer(serializers.ModelSerializer):
    workspace = workspace_field()
    recomputeEveryMinutes = serializers.IntegerField(
        source="recompute_every_minutes",
        required=False,
        allow_null=True,
        min_value=1,
        max_value=525_600,
    )
    isActive = serializers.BooleanField(source="is_active", required=False)
    memberCount = serializers.IntegerField(source="member_count", read_only=True)
    computedAt = serializers.DateTimeField(source="computed_at", read_only=True)

    class Meta:
        model = Segment
        fields = [
            "slug",
            "name",
            "description",
            "workspace",
            "rule",
            "isActive",
            "recomputeEveryMinutes",
            "memberCount",
            "computedAt",
        ]
        # Slug uniqueness per workspace is checked in validate(), where the workspace is known.
        validators = []

    def validate(self, data):
        workspace = data["workspace"] = workspace_for_write(
            user=self.context["request"].user, given=data.get("workspace"), instance=self.instance
        )
        slug = data.get("slug") or self.instance.slug
        clash = Segment.objects.filter(workspace=workspace, slug=slug)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError({"slug": "this workspace already has a segment with this slug"})
        if "rule" in data:
            try:
                segment_validate(workspace_id=workspace.pk, slug=slug, rule=data["rule"])
            except RuleError as error:
                raise ValidationError(
                    {"rule": {"path": error.path, "message": error.message}}
                ) from None
        return data

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if "recompute_every_minutes" in values:
            minutes = values.pop("recompute_every_minutes")
            from datetime import timedelta

            values["recompute_every"] = None if minutes is None else timedelta(minutes=minutes)
        return values


class MemberSerializer(serializers.ModelSerializer):
    guest = GuestSerializer()
    enteredAt = serializers.DateTimeField(source="entered_at")

    class Meta:
        model = SegmentMembership
        fields = ["enteredAt", "guest"]


class ByName(Pages):
    ordering = ("name", "id")


class ByEntry(Pages):
    ordering = ("-entered_at", "-id")


TRAITS_PARAM = OpenApiParameter(
    "traits", OpenApiTypes.STR, description="trait columns to add, e.g. plan,country"
)


class SegmentViewSet(
    WorkspaceScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Segments of the workspaces you belong to. Saving a rule queues a full recompute."""

    serializer_class = SegmentSerializer
    pagination_class = ByName
    lookup_field = "slug"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def base_queryset(self):
        return Segment.objects.select_related("workspace")

    def perform_create(self, serializer):
        segment = serializer.save()
        self._recompute_soon(segment)

    def perform_update(self, serializer):
        old_slug, old_workspace = serializer.instance.slug, serializer.instance.workspace_id
        with transaction.atomic():  # the new slug and the rules that follow it, together
            segment = serializer.save()
            if segment.slug != old_slug and segment.workspace_id == old_workspace:
                segment_slug_follow(workspace_id=old_workspace, old=old_slug, new=segment.slug)
        if "rule" in serializer.validated_data:
            self._recompute_soon(segment)

    @staticmethod
    def _recompute_soon(segment: Segment) -> None:
        from .tasks import segment_recompute

        transaction.on_commit(lambda: segment_recompute.delay(segment.pk))

    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def recompute(self, request, slug=None):
        """Queue a full recompute now."""
        self._recompute_soon(self.get_object())
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=MemberSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=ByEntry)
    def members(self, request, slug=None):
        """Current members, most recently entered first."""
        memberships = (
            self.get_object()
            .memberships.filter(exited_at__isnull=True)
            .select_related("guest")
            .prefetch_related("guest__identities")
        )
        page = self.paginate_queryset(memberships)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(parameters=[TRAITS_PARAM], responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="export.csv")
    def export_csv(self, request, slug=None):
        """Current members as CSV (streamed)."""
        segment = self.get_object()
        response = StreamingHttpResponse(
            export_csv(segment, traits=traits_param(request.query_params.get("traits"))),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{segment.slug}.csv"'
        return response

    @extend_schema(
        parameters=[TRAITS_PARAM], responses={(200, "application/x-ndjson"): OpenApiTypes.STR}
    )
    @action(detail=True, methods=["get"], url_path="export.ndjson")
    def export_ndjson(self, request, slug=None):
        """Current members as NDJSON (streamed)."""
        segment = self.get_object()
        response = StreamingHttpResponse(
            export_ndjson(segment, traits=traits_param(request.query_params.get("traits"))),
            content_type="application/x-ndjson",
        )
        response["Content-Disposition"] = f'attachment; filename="{segment.slug}.ndjson"'
        return response
