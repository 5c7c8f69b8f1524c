from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .admin_base import (
    FixedChoicesFilter,
    OfferedChoicesFilter,
    SeenWithinFilter,
    WorkspaceScopedAdmin,
    pretty_json,
)
from .doors import stream
from .doors.segment import CHANNEL_BY_SOURCE_KIND
from .messages import MESSAGE_TYPES
from .models import Event, FailedEvent, InboxRequest, Source, Workspace
from .selectors import sources_forget, workspaces_visible

CHANNELS = sorted(
    {*CHANNEL_BY_SOURCE_KIND.values(), "web", "mobile_web", "mobile_app", "email", "kiosk"}
    | set(stream.CHANNELS)
)


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "portal_id", "client_key", "session_timeout", "created_at"]
    search_fields = ["name", "client_key"]
    readonly_fields = ["portal_id"]
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return workspaces_visible(request.user)

    def get_readonly_fields(self, request, obj=None):
        # The member picker lists every user; only superusers may see and change it.
        if request.user.is_superuser:
            return self.readonly_fields
        return [*self.readonly_fields, "members"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.pk = services.workspace_create(name=obj.name).pk
        obj.refresh_from_db()


@admin.register(Source)
class SourceAdmin(WorkspaceScopedAdmin):
    list_display = ["name", "workspace", "kind", "prop_id", "is_active", "dedup_window"]
    list_filter = ["kind", "is_active", "workspace"]
    search_fields = ["name", "workspace__name"]
    list_select_related = ["workspace"]
    readonly_fields = ["prop_id", "write_key_reveal"]
    actions = ["rotate_write_key"]
    fieldsets = [
        (None, {"fields": ["workspace", "name", "kind", "is_active", "prop_id"]}),
        ("Write key", {"fields": ["write_key_reveal"]}),
        (
            "Ingestion",
            {
                "fields": [
                    "dedup_window",
                    "rate_limit",
                    "allowed_origins",
                    "allowed_redirect_hosts",
                ]
            },
        ),
    ]

    def get_list_filter(self, request):
        return self.list_filter if request.user.is_superuser else ["kind", "is_active"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["workspace", "name", "kind"]}), self.fieldsets[2]]
        return self.fieldsets

    @admin.display(description="write key")
    def write_key_reveal(self, obj):
        return format_html(
            "<details><summary>•••••••• (click to reveal)</summary><code>{}</code></details>",
            obj.write_key,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        source = self.get_object(request, object_id)
        if source is not None:
            host = request.get_host()
            extra_context = {
                **(extra_context or {}),
                "install": {
                    "host": host,
                    "base": f"{request.scheme}://{host}",
                    "write_key": source.write_key,
                },
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            sources_forget()
            return
        created = services.source_create(
            workspace=obj.workspace,
            name=obj.name,
            kind=obj.kind,
            dedup_window=obj.dedup_window,
            allowed_origins=obj.allowed_origins,
            allowed_redirect_hosts=obj.allowed_redirect_hosts,
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(
        description="Rotate the write key (the old one stops working)", permissions=["change"]
    )
    def rotate_write_key(self, request, queryset):
        for source in queryset:
            services.source_rotate_write_key(source=source)
        messages.success(request, f"Rotated {queryset.count()} write key(s).")


class EventTypeFilter(FixedChoicesFilter):
    title = "type"
    parameter_name = "type"
    field_name = "type"
    options = (
        [(t, t) for t in sorted(MESSAGE_TYPES)]
        + [("TRACKING", "TRACKING")]
        + [(t, f"{t} (Sitecore)") for t in stream.STANDARD_TYPES]
    )


class ChannelFilter(FixedChoicesFilter):
    title = "channel"
    parameter_name = "channel"
    field_name = "channel"
    options = [(c, c) for c in CHANNELS]


class SourceFilter(OfferedChoicesFilter):
    """Sources of the user's workspaces only, named without a query per source."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        sources = Source.objects.select_related("workspace")
        if not request.user.is_superuser:
            sources = sources.filter(workspace__in=workspaces_visible(request.user))
        return [(str(source.pk), str(source)) for source in sources]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(source_id=self.value())


def guest_link(guest_id, ref) -> str:
    url = reverse("admin:profiles_guest_change", args=[guest_id])
    return format_html('<a href="{}">{}</a>', url, str(ref)[:8])


@admin.register(Event)
class EventAdmin(WorkspaceScopedAdmin):
    list_display = ["timestamp", "type", "name", "guest_ref", "channel", "source", "door"]
    list_filter = [SeenWithinFilter, EventTypeFilter, "door", ChannelFilter, SourceFilter]
    search_fields = ["=message_id"]
    search_help_text = "Exact messageId. To find a person's events, search Guests."
    list_select_related = ["source__workspace", "guest"]
    ordering = ["-timestamp", "-id"]
    raw_id_fields = ["guest", "session"]
    fieldsets = [
        (None, {"fields": ["type", "name", "timestamp", "guest", "session", "source", "door"]}),
        ("Ids", {"fields": ["message_id", "user_id", "anonymous_id", "group_id", "previous_id"]}),
        (
            "Normalised",
            {"fields": ["properties_pretty", "traits_pretty", "context_pretty", "integrations"]},
        ),
        (
            "As received",
            {
                "fields": ["payload_pretty"],
                "description": "The event exactly as its door received it (Sitecore, "
                "Optimizely and /collect events; a Segment-spec event is stored as sent).",
            },
        ),
        (
            "Typed",
            {"fields": ["channel", "revenue", "currency", "value", "ip"]},
        ),
        (
            "Times",
            {
                "fields": [
                    "original_timestamp",
                    "sent_at",
                    "received_at",
                    "timestamp_clamped",
                ]
            },
        ),
    ]
    readonly_fields = ["properties_pretty", "context_pretty", "traits_pretty", "payload_pretty"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="original payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload) if obj.payload is not None else "—"

    @admin.display(description="guest")
    def guest_ref(self, obj):
        return guest_link(obj.guest_id, obj.guest.ref)

    @admin.display(description="properties")
    def properties_pretty(self, obj):
        return pretty_json(obj.properties)

    @admin.display(description="context")
    def context_pretty(self, obj):
        return pretty_json(obj.context)

    @admin.display(description="traits")
    def traits_pretty(self, obj):
        return pretty_json(obj.traits)


@admin.register(FailedEvent)
class FailedEventAdmin(WorkspaceScopedAdmin):
    list_display = ["created_at", "code", "reason", "field", "source", "replayed_at"]
    list_filter = ["code", SourceFilter]
    list_select_related = ["source__workspace"]
    readonly_fields = ["payload_pretty"]
    exclude = ["payload"]
    raw_id_fields = ["inbox"]
    actions = ["replay"]

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Replay through the pipeline (after a fix)", permissions=["change"])
    def replay(self, request, queryset):
        sent = services.failed_events_replay(failed=list(queryset))
        skipped = queryset.count() - sent
        messages.success(request, f"Sent {sent} failed event(s) through the pipeline again.")
        if skipped:
            messages.warning(
                request, f"{skipped} were already replayed or have no payload to replay."
            )


@admin.register(InboxRequest)
class InboxRequestAdmin(WorkspaceScopedAdmin):
    workspace_field = "source__workspace"
    list_display = ["id", "source", "door", "status", "received_at", "processed_at"]
    list_filter = ["status", "door"]
    list_select_related = ["source__workspace"]
    exclude = ["body"]

    def has_add_permission(self, request):
        return False
