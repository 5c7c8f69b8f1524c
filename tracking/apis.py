"""The read API over events."""

from __future__ import annotations

from datetime import UTC, timedelta

import django_filters
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError

from config.lib.api import Pages

from .api_common import WorkspaceScopedViewSetMixin
from .models import Event


class EventSerializer(serializers.ModelSerializer):
    """An event as the Segment-spec message it was stored as, plus its guest and source."""

    event = serializers.SerializerMethodField()
    name = serializers.SerializerMethodField()
    messageId = serializers.CharField(source="message_id")
    userId = serializers.CharField(source="user_id", allow_null=True)
    anonymousId = serializers.CharField(source="anonymous_id", allow_null=True)
    groupId = serializers.CharField(source="group_id", allow_null=True)
    previousId = serializers.CharField(source="previous_id", allow_null=True)
    originalTimestamp = serializers.DateTimeField(source="original_timestamp")
    sentAt = serializers.DateTimeField(source="sent_at")
    receivedAt = serializers.DateTimeField(source="received_at")
    timestampClamped = serializers.BooleanField(source="timestamp_clamped")
    guestRef = serializers.UUIDField(source="guest.ref")
    sessionRef = serializers.UUIDField(source="session.ref", allow_null=True, default=None)
    source = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "type",
            "event",
            "name",
            "messageId",
            "userId",
            "anonymousId",
            "groupId",
            "previousId",
            "properties",
            "traits",
            "context",
            "integrations",
            "payload",
            "timestamp",
            "originalTimestamp",
            "sentAt",
            "receivedAt",
            "timestampClamped",
            "channel",
            "ip",
            "revenue",
            "currency",
            "value",
            "door",
            "guestRef",
            "sessionRef",
            "source",
        ]

    def get_event(self, event: Event) -> str | None:
        # A track event's name, an Optimizely EventType, a /collect ea, a Sitecore type.
        return event.name if event.type not in ("page", "screen") else None

    def get_name(self, event: Event) -> str | None:
        return event.name if event.type in ("page", "screen") else None

    def get_source(self, event: Event) -> dict:
        return {"propId": event.source.prop_id, "name": event.source.name}

    def to_representation(self, instance: Event) -> dict:
        if instance.type == "TRACKING":
            return tracking_event_shape(instance)
        data = super().to_representation(instance)
        # Segment-spec messages omit ids that do not apply rather than sending empty strings.
        for key in ("event", "name", "userId", "anonymousId", "groupId", "previousId"):
            if not data.get(key):
                data[key] = None
        return data


def _iso_ms(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tracking_event_shape(event: Event) -> dict:
    """A TRACKING event exactly as Sitecore Personalize gives one (seed 004)."""
    stored = event.properties or {}
    created = event.received_at
    return {
        "ref": stored.get("ref"),
        "clientKey": event.workspace.client_key,
        "createdAt": _iso_ms(created),
        "modifiedAt": _iso_ms(created + timedelta(milliseconds=10)),
        "type": "TRACKING",
        "status": "PROCESSED",
        "channel": event.channel,
        "pointOfSale": stored.get("pointOfSale", ""),
        "browserRef": stored.get("browserRef"),
        "sessionRef": str(event.session.ref) if event.session_id else None,
        "flowExecutionRef": stored.get("flowExecutionRef"),
        "arbitraryData": stored.get("arbitraryData", {}),
    }


class EventFilter(django_filters.FilterSet):
    source = django_filters.NumberFilter(field_name="source__prop_id", help_text="prop_id")
    type = django_filters.CharFilter()
    event = django_filters.CharFilter(field_name="name", help_text="track event or page name")
    userId = django_filters.CharFilter(field_name="user_id")
    anonymousId = django_filters.CharFilter(field_name="anonymous_id")
    since = django_filters.IsoDateTimeFilter(method="since_filter")
    flowFriendlyId = django_filters.CharFilter(
        method="flow_friendly_id", help_text="TRACKING events of this experience"
    )

    class Meta:
        model = Event
        fields = ["source", "type", "event", "userId", "anonymousId", "since", "flowFriendlyId"]

    # The older snake_case names still filter; the schema names the camelCase ones only.
    ALIASES = {"user_id": "userId", "anonymous_id": "anonymousId"}

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and any(old in data for old in self.ALIASES):
            data = data.copy()
            for old, new in self.ALIASES.items():
                if old in data and new not in data:
                    data[new] = data[old]
        super().__init__(data, *args, **kwargs)

    def since_filter(self, queryset, name, value):
        # PostgreSQL takes offsets up to ±15:59 only; Python's go to ±23:59. UTC fits both.
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValidationError({"since": "the date-time is out of range"}) from None
        return queryset.filter(timestamp__gte=value)

    def flow_friendly_id(self, queryset, name, value):
        return queryset.filter(type="TRACKING", name=value)


class NewestFirst(Pages):
    ordering = ("-timestamp", "-id")


class EventViewSet(WorkspaceScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Stored events of the workspaces you belong to, newest first."""

    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = NewestFirst

    def base_queryset(self):
        return Event.objects.select_related("guest", "source", "session", "workspace")
