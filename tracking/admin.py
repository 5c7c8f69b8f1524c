import json

from django.contrib import admin, messages
from django.utils.html import format_html

from . import services
from .models import Event, FailedEvent, InboxRequest, Source, Workspace


def _pretty(value) -> str:
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "portal_id", "client_key", "created_at"]
    search_fields = ["name", "client_key"]
    readonly_fields = ["portal_id"]
    filter_horizontal = ["members"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.pk = services.workspace_create(name=obj.name).pk
        obj.refresh_from_db()


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "kind", "prop_id", "is_active", "dedup_window"]
    list_filter = ["kind", "is_active", "workspace"]
    search_fields = ["name", "workspace__name"]
    list_select_related = ["workspace"]
    readonly_fields = ["prop_id", "write_key"]
    actions = ["rotate_write_key"]

    def get_exclude(self, request, obj=None):
        return ["write_key_digest"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
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

    @admin.action(description="Rotate the write key (the old one stops working)")
    def rotate_write_key(self, request, queryset):
        for source in queryset:
            services.source_rotate_write_key(source=source)
        messages.success(request, f"Rotated {queryset.count()} write key(s).")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "type", "name", "user_id", "anonymous_id", "channel", "source"]
    list_filter = ["type", "door", "channel", "source"]
    search_fields = ["=message_id", "=user_id", "=anonymous_id", "name"]
    list_select_related = ["source"]
    raw_id_fields = ["guest"]
    show_full_result_count = False
    date_hierarchy = "timestamp"
    readonly_fields = ["properties_pretty", "context_pretty", "traits_pretty"]
    exclude = ["properties", "context", "traits"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="properties")
    def properties_pretty(self, obj):
        return _pretty(obj.properties)

    @admin.display(description="context")
    def context_pretty(self, obj):
        return _pretty(obj.context)

    @admin.display(description="traits")
    def traits_pretty(self, obj):
        return _pretty(obj.traits)


@admin.register(FailedEvent)
class FailedEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "code", "reason", "field", "source", "replayed_at"]
    list_filter = ["code", "source"]
    list_select_related = ["source"]
    readonly_fields = ["payload_pretty"]
    exclude = ["payload"]
    raw_id_fields = ["inbox"]
    show_full_result_count = False

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return _pretty(obj.payload)


@admin.register(InboxRequest)
class InboxRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "door", "status", "received_at", "processed_at"]
    list_filter = ["status", "door"]
    list_select_related = ["source"]
    exclude = ["body"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False
