"""The read API over guests."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination

from tracking.apis import EventSerializer, NewestFirst
from tracking.selectors import workspaces_visible

from .models import Guest, Identity
from .selectors import guest_get_by_ref, guests_by_identifier


class IdentifierSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="kind")
    id = serializers.CharField(source="value")

    class Meta:
        model = Identity
        fields = ["provider", "id"]


class GuestSerializer(serializers.ModelSerializer):
    """A guest in the shape Sitecore gives one."""

    guestType = serializers.CharField(source="guest_type")
    firstSeen = serializers.DateTimeField(source="first_seen")
    lastSeen = serializers.DateTimeField(source="last_seen")
    firstName = serializers.CharField(source="first_name")
    lastName = serializers.CharField(source="last_name")
    identifiers = IdentifierSerializer(source="identities", many=True)

    class Meta:
        model = Guest
        fields = [
            "ref",
            "guestType",
            "firstSeen",
            "lastSeen",
            "email",
            "firstName",
            "lastName",
            "identifiers",
            "traits",
        ]


class RecentlySeen(CursorPagination):
    ordering = ("-last_seen", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500


class GuestViewSet(viewsets.ReadOnlyModelViewSet):
    """Guests of the workspaces you belong to."""

    serializer_class = GuestSerializer
    pagination_class = RecentlySeen
    lookup_field = "ref"

    def _guests(self):
        return Guest.objects.filter(
            workspace__in=workspaces_visible(self.request.user), merged_into__isnull=True
        )

    def get_queryset(self):
        guests = self._guests()
        identifier = self.request.query_params.get("identifier")
        if identifier:
            guests = guests_by_identifier(
                value=identifier, kind=self.request.query_params.get("kind"), guests=guests
            )
        return guests.prefetch_related("identities")

    def get_object(self) -> Guest:
        guest = guest_get_by_ref(
            ref=self.kwargs["ref"],
            guests=Guest.objects.filter(workspace__in=workspaces_visible(self.request.user)),
        )
        if guest is None:
            raise Http404
        return guest

    @extend_schema(
        parameters=[
            OpenApiParameter("identifier", OpenApiTypes.STR, description="any identifier value"),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, description="user_id, anonymous_id, email, …"
            ),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=EventSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=NewestFirst)
    def events(self, request, ref=None):
        """The guest's events, newest first."""
        guest = self.get_object()
        events = guest.events.select_related("guest", "source")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(EventSerializer(page, many=True).data)
