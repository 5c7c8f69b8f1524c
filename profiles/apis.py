"""The read API over guests."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.lib.api import Pages
from tracking.api_common import WorkspaceScopedViewSetMixin
from tracking.apis import EventSerializer, NewestFirst

from .models import Erasure, Guest, Identity, Session
from .selectors import guest_get_by_ref, guest_segments, guests_by_identifier
from .services import guest_erase

GUEST_SESSIONS_SHOWN = 20


class IdentifierSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="kind")
    id = serializers.CharField(source="value")

    class Meta:
        model = Identity
        fields = ["provider", "id"]


class SessionSerializer(serializers.ModelSerializer):
    clientSessionId = serializers.CharField(source="client_session_id")
    startedAt = serializers.DateTimeField(source="started_at")
    endedAt = serializers.DateTimeField(source="ended_at")
    durationSeconds = serializers.SerializerMethodField()
    eventCount = serializers.IntegerField(source="event_count")
    pageViewCount = serializers.IntegerField(source="page_view_count")
    firstPage = serializers.CharField(source="first_page")
    lastPage = serializers.CharField(source="last_page")

    class Meta:
        model = Session
        fields = [
            "ref",
            "channel",
            "status",
            "clientSessionId",
            "device",
            "startedAt",
            "endedAt",
            "durationSeconds",
            "eventCount",
            "pageViewCount",
            "firstPage",
            "lastPage",
        ]

    def get_durationSeconds(self, session: Session) -> int:
        return int(session.duration.total_seconds())


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


class GuestDetailSerializer(GuestSerializer):
    """A guest with its latest sessions and its segment memberships."""

    sessions = serializers.SerializerMethodField()
    segments = serializers.SerializerMethodField()

    class Meta(GuestSerializer.Meta):
        fields = [*GuestSerializer.Meta.fields, "sessions", "segments"]

    @extend_schema_field(SessionSerializer(many=True))
    def get_sessions(self, guest: Guest) -> list:
        latest = guest.sessions.order_by("-started_at")[:GUEST_SESSIONS_SHOWN]
        return SessionSerializer(latest, many=True).data

    def get_segments(self, guest: Guest) -> list[str]:
        return guest_segments(guest)


class ErasureSerializer(serializers.ModelSerializer):
    guestRef = serializers.UUIDField(source="guest_ref")
    erasedAt = serializers.DateTimeField(source="erased_at")

    class Meta:
        model = Erasure
        fields = ["guestRef", "erasedAt", "events", "sessions", "identities"]


class RecentlySeen(Pages):
    ordering = ("-last_seen", "-id")


class CanErase(permissions.BasePermission):
    """Erasing a guest takes the delete-guest permission (admins and the privacy team)."""

    def has_permission(self, request, view) -> bool:
        if request.method != "DELETE":
            return True
        return request.user.has_perm("profiles.delete_guest")


class GuestViewSet(
    WorkspaceScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Guests of the workspaces you belong to."""

    permission_classes = [permissions.IsAuthenticated, CanErase]
    pagination_class = RecentlySeen
    lookup_field = "ref"

    def base_queryset(self):
        guests = Guest.objects.filter(merged_into__isnull=True)
        identifier = self.request.query_params.get("identifier")
        if identifier:
            guests = guests_by_identifier(
                value=identifier, kind=self.request.query_params.get("kind"), guests=guests
            )
        return guests.prefetch_related("identities")

    def get_serializer_class(self):
        return GuestDetailSerializer if self.action == "retrieve" else GuestSerializer

    def get_object(self) -> Guest:
        guest = guest_get_by_ref(
            ref=self.kwargs["ref"],
            guests=self.scoped(Guest.objects.all()),
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

    @extend_schema(responses=ErasureSerializer)
    def destroy(self, request, *args, **kwargs):
        """Erase the guest: events, sessions and identities go; an audit row stays; later
        events carrying the guest's identifiers are dropped."""
        erasure = guest_erase(guest=self.get_object(), erased_by=request.user.get_username())
        return Response(ErasureSerializer(erasure).data)

    @extend_schema(responses=EventSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=NewestFirst)
    def events(self, request, ref=None):
        """The guest's events, newest first."""
        guest = self.get_object()
        events = guest.events.select_related("guest", "source", "session", "workspace")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(EventSerializer(page, many=True).data)
