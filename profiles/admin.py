import contextlib
import uuid
from datetime import timedelta

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.utils import timezone

from tracking.admin_base import SeenWithinFilter, WorkspaceScopedAdmin, pretty_json
from tracking.models import Event

from .models import Erasure, Guest, GuestMerge, Identity, Session

TIMELINE_PAGE_SIZE = 25
GUEST_PAGE_SESSIONS = 20


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["kind", "value", "created_at"]
    readonly_fields = ["kind", "value", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class LastSeenFilter(SeenWithinFilter):
    title = "last seen"
    parameter_name = "seen"
    field_name = "last_seen"
    SPANS = {key: span for key, span in SeenWithinFilter.SPANS.items() if key != "1h"}
    OLDER = ("older", "More than 30 days ago")

    def lookups(self, request, model_admin):
        return [*super().lookups(request, model_admin), self.OLDER]

    def queryset(self, request, queryset):
        if self.value() == self.OLDER[0]:
            return queryset.filter(last_seen__lt=timezone.now() - timedelta(days=30))
        return super().queryset(request, queryset)


@admin.register(Guest)
class GuestAdmin(WorkspaceScopedAdmin):
    list_display = ["ref", "guest_type", "email", "first_name", "last_name", "last_seen"]
    list_filter = ["guest_type", LastSeenFilter]
    search_fields = ["=ref", "=identities__value", "^email", "^first_name", "^last_name"]
    search_help_text = "Any identifier (exact), or the start of an email or name."
    ordering = ["-last_seen", "-id"]
    fieldsets = [
        (None, {"fields": ["ref", "guest_type", "email", "first_name", "last_name"]}),
        ("Seen", {"fields": ["first_seen", "last_seen", "merged_into"]}),
        ("Traits", {"fields": ["traits_pretty"]}),
    ]
    readonly_fields = ["ref", "traits_pretty", "first_seen", "last_seen", "merged_into"]
    inlines = [IdentityInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # Merged guests live on only as old refs that point at their survivor.
            queryset = queryset.filter(merged_into__isnull=True)
        return queryset

    def get_search_results(self, request, queryset, search_term):
        """Exact identifier or ref, or the start of an email or name; no join duplicates."""
        term = search_term.strip()
        if not term:
            return queryset, False
        by_identity = Identity.objects.filter(guest=OuterRef("pk"), value=term)
        matched = queryset.filter(Exists(by_identity))
        text = (
            queryset.filter(email__istartswith=term)
            | queryset.filter(first_name__istartswith=term)
            | queryset.filter(last_name__istartswith=term)
        )
        with contextlib.suppress(ValueError):  # not a UUID: no ref can match
            matched = matched | queryset.filter(ref=uuid.UUID(term))
        return matched | text, False

    def has_add_permission(self, request):
        return False

    @admin.display(description="traits")
    def traits_pretty(self, obj):
        return pretty_json(obj.traits)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        guest = self.get_object(request, object_id)
        if guest is not None:
            extra_context = {**(extra_context or {}), **self._guest_page(request, guest)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _guest_page(self, request, guest: Guest) -> dict:
        """Sessions, merges and a page of the timeline, without counting the whole timeline."""
        try:
            page = max(1, int(request.GET.get("timeline", 1)))
        except ValueError:
            page = 1
        start = (page - 1) * TIMELINE_PAGE_SIZE
        events = list(
            Event.objects.filter(guest=guest)
            .select_related("source", "session")
            .order_by("-timestamp", "-id")[start : start + TIMELINE_PAGE_SIZE + 1]
        )
        return {
            "timeline": events[:TIMELINE_PAGE_SIZE],
            "timeline_page": page,
            "timeline_next": page + 1 if len(events) > TIMELINE_PAGE_SIZE else None,
            "timeline_previous": page - 1 if page > 1 else None,
            "sessions": list(guest.sessions.order_by("-started_at")[:GUEST_PAGE_SESSIONS]),
            "merges": list(guest.merges.all()[:20]),
        }


@admin.register(Identity)
class IdentityAdmin(WorkspaceScopedAdmin):
    list_display = ["kind", "value", "guest", "created_at"]
    search_fields = ["=value"]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]


@admin.register(Session)
class SessionAdmin(WorkspaceScopedAdmin):
    list_display = [
        "started_at",
        "guest",
        "channel",
        "status",
        "duration",
        "event_count",
        "page_view_count",
        "first_page",
    ]
    list_filter = ["status", "channel"]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]
    search_fields = ["=ref", "=client_session_id"]
    ordering = ["-started_at"]


@admin.register(GuestMerge)
class GuestMergeAdmin(WorkspaceScopedAdmin):
    list_display = ["created_at", "guest", "merged_ref", "reason", "merged_by", "message_id"]
    list_filter = ["reason"]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]


@admin.register(Erasure)
class ErasureAdmin(WorkspaceScopedAdmin):
    list_display = ["erased_at", "guest_ref", "erased_by", "events", "sessions", "identities"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
