import json
from datetime import timedelta

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import OuterRef, Subquery
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from . import debugger, services
from .admin_base import (
    FixedChoicesFilter,
    OfferedChoicesFilter,
    SeenWithinFilter,
    SystemRecordAdmin,
    WorkspaceScopedAdmin,
    object_pk,
    pretty_json,
    workspace_ids_visible,
)
from .channels import CHOICES as CHANNEL_CHOICES
from .doors import stream
from .library import install_snippet
from .messages import MESSAGE_TYPES
from .models import Door, Event, FailedEvent, InboxRequest, Source, Workspace
from .selectors import catalogue_event_names, sources_forget, workspaces_visible


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
    list_display = ["name", "workspace", "kind", "last_received", "is_active", "prop_id"]
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

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # One index probe per listed source (inbox_source_id_idx), no scan of the inbox.
            latest = InboxRequest.objects.filter(source=OuterRef("pk")).order_by("-id")
            queryset = queryset.annotate(
                last_received_at=Subquery(latest.values("received_at")[:1])
            )
        return queryset

    @admin.display(description="last request received", ordering="last_received_at")
    def last_received(self, obj):
        at = getattr(obj, "last_received_at", None)
        if at is None:
            return format_html('<span class="fp-badge fp-badge-warn">{}</span>', "nothing yet")
        fresh = timezone.now() - at < timedelta(hours=1)
        return format_html(
            '<span class="fp-badge{}" title="{}">{}</span>',
            " fp-badge-good" if fresh else "",
            at.isoformat(),
            f"{naturaltime(at)}",
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/debugger/",
                self.admin_site.admin_view(self.debugger_view),
                name="tracking_source_debugger",
            ),
            path(
                "<path:object_id>/debugger/<int:inbox_id>/",
                self.admin_site.admin_view(self.debugger_payload_view),
                name="tracking_source_debugger_payload",
            ),
            *super().get_urls(),
        ]

    def _debugged_source(self, request, object_id):
        """The source of the user's workspaces that the address names, or None."""
        pk = object_pk(Source, unquote(object_id))
        if pk is None or not self.has_view_permission(request):
            return None
        return self.get_queryset(request).filter(pk=pk).first()

    def debugger_view(self, request, object_id):
        """The source's latest requests as JSON, for its page's live debugger (polled)."""
        source = self._debugged_source(request, object_id)
        if source is None:
            return JsonResponse({"error": "no such source"}, status=404)
        debugger.source_watch(source.pk)
        return JsonResponse(
            {"now": timezone.now().isoformat(), "requests": debugger.source_requests(source)}
        )

    def debugger_payload_view(self, request, object_id, inbox_id):
        """What one request of the source carried (while a copy is kept), and what it refused."""
        source = self._debugged_source(request, object_id)
        inbox = None
        if source is not None and object_pk(InboxRequest, inbox_id) is not None:
            inbox = InboxRequest.objects.filter(source=source, pk=inbox_id).first()
        if inbox is None:
            return JsonResponse({"error": "no such request"}, status=404)
        refused = FailedEvent.objects.filter(inbox=inbox).order_by("id")[
            : debugger.REJECTIONS_SHOWN
        ]
        return JsonResponse(
            {
                "id": inbox.pk,
                "payload": debugger.request_payload(inbox),
                "refused": [
                    {"reason": failed.reason, "field": failed.field, "payload": failed.payload}
                    for failed in refused
                ],
            }
        )

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
            debugger.source_watch(source.pk)
            host = request.get_host()
            base = f"{request.scheme}://{host}"
            extra_context = {
                **(extra_context or {}),
                "debugger_url": reverse("admin:tracking_source_debugger", args=[source.pk]),
                "title": source.name,
                "subtitle": f"{source.workspace} · {source.get_kind_display()}",
                "install": {
                    "host": host,
                    "base": base,
                    "snippet": install_snippet(base=base, write_key="WRITE_KEY"),
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


class DoorFilter(FixedChoicesFilter):
    title = "door"
    parameter_name = "door"
    field_name = "door"
    options = Door.choices


class ChannelFilter(FixedChoicesFilter):
    title = "channel"
    parameter_name = "channel"
    field_name = "channel"
    options = CHANNEL_CHOICES


@admin.display(description="channel", ordering="channel")
def channel_shown(obj) -> str:
    """An event's or a session's channel by its label."""
    return obj.channel_label


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


class EventNameFilter(OfferedChoicesFilter):
    """The event names the user's workspaces have sent, from the catalogue (no scan of the
    events table), as a drop-down."""

    title = "event name"
    parameter_name = "name"
    template = "admin/fp_select_filter.html"

    def lookups(self, request, model_admin):
        workspace_ids = workspaces_visible(request.user).values_list("pk", flat=True)
        return [(name, name) for name in catalogue_event_names(workspace_ids=workspace_ids)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(name=self.value())


def _experiences(request):
    """The experiences of the user's workspaces (by string: experiences sit above tracking)."""
    if not apps.is_installed("experiences"):
        return None
    experience = apps.get_model("experiences", "Experience")
    return experience.objects.filter(workspace__in=workspaces_visible(request.user))


class ExperienceFilter(OfferedChoicesFilter):
    """TRACKING events (an experience shown to a guest) of one experience."""

    title = "experience shown"
    parameter_name = "experience"
    template = "admin/fp_select_filter.html"

    def lookups(self, request, model_admin):
        experiences = _experiences(request)
        if experiences is None:
            return []
        seen = {}
        for friendly_id, name in experiences.order_by("name").values_list("friendly_id", "name"):
            seen.setdefault(friendly_id, f"{name} ({friendly_id})")
        return list(seen.items())

    def queryset(self, request, queryset):
        # By name alone (a TRACKING event is named after its experience's friendly id): with
        # the type as well the planner picks the (workspace, type, name) index and sorts every
        # such event instead of walking (workspace, name, -timestamp) to the first page.
        if self.value() is None:
            return queryset
        return queryset.filter(name=self.value())


class VariantFilter(OfferedChoicesFilter):
    """The variant shown, among those of the experience chosen in ``ExperienceFilter``."""

    title = "variant shown"
    parameter_name = "variant"
    template = "admin/fp_select_filter.html"

    def lookups(self, request, model_admin):
        chosen = request.GET.get(ExperienceFilter.parameter_name)
        experiences = _experiences(request)
        if not chosen or experiences is None:
            return []
        variant = apps.get_model("experiences", "Variant")
        names = (
            variant.objects.filter(experience__in=experiences.filter(friendly_id=chosen))
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()
        )
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        # With the type, the experience's name and the variant the planner walks
        # event_tracking_variant_idx (TRACKING events only) newest first, and its estimate of
        # how many there are is good enough to page by.
        if self.value() is None:
            return queryset
        return queryset.filter(type="TRACKING", properties__variant=self.value())


DOOR_SHORT = {
    Door.SEGMENT: "/v1",
    Door.PERSONALIZE: "/v2/callFlows",
    Door.STREAM: "/v1.2 (Sitecore)",
    Door.OPTIMIZELY: "Optimizely",
    Door.COLLECT: "/collect",
}
TYPE_WORDS = {
    "track": "did",
    "page": "viewed page",
    "screen": "viewed screen",
    "identify": "was identified",
    "group": "joined group",
    "alias": "was aliased",
    "TRACKING": "was shown experience",
    "VIEW": "viewed",
}


def event_sentence(event) -> str:
    """What the event says, in words: "did Order Completed", "viewed page /shoes", "was shown
    experience hero_banner (variant personal)"."""
    words = TYPE_WORDS.get(event.type, event.type)
    properties = event.properties if isinstance(event.properties, dict) else {}
    if event.type == "TRACKING":
        variant = properties.get("variant")
        tail = f" (variant {variant})" if isinstance(variant, str) and variant else ""
        return f"{words} {event.name}{tail}"
    if event.type in ("page", "screen", "VIEW"):
        place = event.name or properties.get("title") or properties.get("path") or ""
        url = properties.get("url")
        if isinstance(url, str) and url and not url.endswith(str(place)):
            return f"{words} {place} ({url})".replace("  ", " ")
        return f"{words} {place}".strip()
    if event.type == "identify":
        traits = event.traits if isinstance(event.traits, dict) else {}
        return f"{words} ({', '.join(sorted(traits))})" if traits else words
    return f"{words} {event.name}".strip()


@admin.register(Event)
class EventAdmin(WorkspaceScopedAdmin):
    list_display = ["when", "what", "guest_ref", channel_shown, "source_name", "door_short"]
    list_display_links = ["when"]
    list_filter = [
        SeenWithinFilter,
        EventNameFilter,
        ExperienceFilter,
        VariantFilter,
        EventTypeFilter,
        ChannelFilter,
        SourceFilter,
        DoorFilter,
    ]
    search_fields = ["=message_id"]
    search_help_text = (
        "A guest's identifier (user id, anonymous id, email …) or a messageId, exactly."
    )
    list_select_related = ["source", "guest"]
    ordering = ["-timestamp", "-id"]
    raw_id_fields = ["guest", "session"]
    fieldsets = [
        (None, {"fields": ["summary"]}),
        (
            "Normalised",
            {
                "fields": ["properties_pretty", "traits_pretty", "context_pretty", "integrations"],
                "classes": ["fp-json-section"],
                "description": "The event as Footprint stores it, whatever door it came by.",
            },
        ),
        (
            "As received",
            {
                "fields": ["payload_pretty"],
                "description": "The event exactly as its door received it (Sitecore, "
                "Optimizely and /collect events; a Segment-spec event is stored as sent).",
            },
        ),
        ("Ids", {"fields": ["message_id", "user_id", "anonymous_id", "group_id", "previous_id"]}),
        (
            "Times",
            {
                "fields": [
                    "timestamp",
                    "original_timestamp",
                    "sent_at",
                    "received_at",
                    "timestamp_clamped",
                ]
            },
        ),
    ]
    readonly_fields = [
        "summary",
        "properties_pretty",
        "context_pretty",
        "traits_pretty",
        "payload_pretty",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        """An exact messageId, or every event of the guest an identifier (or email) names."""
        term = search_term.strip()
        if not term:
            return queryset, False
        guest_model = Event._meta.get_field("guest").related_model
        identity_model = guest_model._meta.get_field("identities").related_model
        visible = workspaces_visible(request.user)
        # The guests first, as a short list of ids: with subqueries inside the OR the planner
        # scans the whole events table; with ids it ORs two index scans.
        owners = set(
            identity_model.objects.filter(value=term, workspace__in=visible).values_list(
                "guest_id", flat=True
            )[:100]
        )
        owners |= set(
            guest_model.objects.filter(email=term, workspace__in=visible).values_list(
                "pk", flat=True
            )[:100]
        )
        guests = models.Q(guest_id__in=sorted(owners))
        # By messageId within each workspace, so that the (workspace, message_id) index serves
        # an operator's search across workspaces too.
        by_message = models.Q(message_id=term)
        if request.user.is_superuser:
            by_message &= models.Q(workspace_id__in=workspace_ids_visible(request))
        # A messageId rarely matches: asked first, so that an identifier's search is the
        # guests' events alone, which PostgreSQL reads newest first from their index and stops
        # at the page's last row (ORed with the messageId it reads and sorts them all).
        if not queryset.filter(by_message).exists():
            return (queryset.filter(guests) if owners else queryset.none()), False
        return queryset.filter(by_message | guests if owners else by_message), False

    @admin.display(description="when", ordering="timestamp")
    def when(self, obj):
        return date_format(timezone.localtime(obj.timestamp), "j M Y, H:i:s")

    @admin.display(description="what happened")
    def what(self, obj):
        return event_sentence(obj)

    @admin.display(description="source", ordering="source__name")
    def source_name(self, obj):
        return obj.source.name

    @admin.display(description="door", ordering="door")
    def door_short(self, obj):
        return DOOR_SHORT.get(obj.door, obj.door)

    @admin.display(description="summary")
    def summary(self, obj):
        local = timezone.localtime
        facts = [
            ("What happened", event_sentence(obj)),
            (
                "When",
                f"{date_format(local(obj.timestamp), 'l j F Y, H:i:s')} "
                f"({timezone.get_current_timezone_name()})",
            ),
            ("Received", date_format(local(obj.received_at), "j M Y, H:i:s")),
            ("Type", obj.type),
            ("Name", obj.name or "–"),
            ("Channel", obj.channel_label or "–"),
            ("Source", f"{obj.source.name} (by {DOOR_SHORT.get(obj.door, obj.door)})"),
        ]
        if obj.revenue is not None:
            facts.append(("Revenue", f"{obj.revenue.normalize():f} {obj.currency}".strip()))
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((label, value) for label, value in facts)
        )
        guest = format_html(
            "<tr><th>Guest</th><td>{}</td></tr>", guest_link(obj.guest_id, obj.guest.ref)
        )
        session = ""
        if obj.session_id:
            session = format_html(
                '<tr><th>Session</th><td><a href="{}">{}</a></td></tr>',
                reverse("admin:profiles_session_change", args=[obj.session_id]),
                f"#{obj.session_id}",
            )
        properties = obj.properties if isinstance(obj.properties, dict) else {}
        details = ""
        if properties:
            details = format_html(
                '<h3 class="fp-subhead">Properties</h3><table class="fp-table fp-props">{}</table>',
                format_html_join(
                    "",
                    "<tr><th>{}</th><td>{}</td></tr>",
                    ((key, _readable(value)) for key, value in sorted(properties.items())),
                ),
            )
        return format_html(
            '<table class="fp-table fp-summary">{}{}{}</table>{}', rows, guest, session, details
        )

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


def _readable(value) -> str:
    """A property value as a person reads it: text as is, nested values as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "–"
    if isinstance(value, int | float):
        return str(value)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 300 else text[:300] + " …"


class IndentedJSONField(forms.JSONField):
    """Shows JSON indented, so a person can find the field to fix."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class ReplayForm(forms.Form):
    payload = IndentedJSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "class": "fp-json-edit"}),
        help_text="The message as its door takes it. Fix what the reason names, then replay: it "
        "goes through the door's parser and the pipeline like any other message.",
    )

    def clean_payload(self):
        payload = self.cleaned_data["payload"]
        if not isinstance(payload, dict):
            raise forms.ValidationError("the message must be a JSON object")
        return payload


@admin.register(FailedEvent)
class FailedEventAdmin(SystemRecordAdmin):
    """A failed event is a record of what arrived and why it failed: it is read-only. A person
    fixes the payload on its replay page, which sends an edited copy and keeps the original."""

    list_display = ["created_at", "code", "reason", "field", "source", "replayed_at"]
    list_filter = ["code", SourceFilter]
    list_select_related = ["source__workspace"]
    fields = [
        "code",
        "reason",
        "field",
        "source",
        "door",
        "received_at",
        "created_at",
        "replayed_at",
        "import_file",
        "import_line",
        "payload_pretty",
    ]
    readonly_fields = fields
    actions = ["replay"]

    def get_fields(self, request, obj=None):
        # Where in an imported file the line was; other failed events came by a door.
        if obj is not None and obj.import_file:
            return self.fields
        return [f for f in self.fields if not f.startswith("import_")]

    def has_replay_permission(self, request, obj=None):
        # Replaying takes the model's change permission, which the record page itself never
        # uses (it is read-only for everyone).
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="tracking_failedevent_replay",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_replay": self.has_replay_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def replay_view(self, request, object_id):
        failed = self.get_object(request, unquote(object_id))
        if failed is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_replay_permission(request, failed):
            raise PermissionDenied
        if failed.payload is None:
            messages.error(request, "This request could not be read at all: there is no payload.")
            return redirect("admin:tracking_failedevent_change", failed.pk)
        form = ReplayForm(request.POST or None, initial={"payload": failed.payload})
        if request.method == "POST" and form.is_valid():
            inbox = services.failed_event_replay_edited(
                failed=failed, payload=form.cleaned_data["payload"]
            )
            self._replay_outcome_tell(request, inbox)
            return redirect("admin:tracking_failedevent_change", failed.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": failed,
            "form": form,
            "title": f"Edit payload and replay: {failed.code}",
            "subtitle": str(failed),
        }
        return TemplateResponse(request, "admin/tracking/failedevent/replay.html", context)

    def _replay_outcome_tell(self, request, inbox: InboxRequest) -> None:
        inbox.refresh_from_db()
        again = FailedEvent.objects.filter(inbox=inbox).first()
        if again is not None:
            url = reverse("admin:tracking_failedevent_change", args=[again.pk])
            messages.warning(
                request,
                format_html(
                    'The edited message failed again: {} (<a href="{}">new failed event</a>).',
                    again.reason,
                    url,
                ),
            )
        elif inbox.status == InboxRequest.Status.DONE:
            messages.success(request, "The edited message was stored.")
        else:
            messages.info(request, "The edited message is queued; it is stored in a moment.")

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Replay through the pipeline (after a fix)", permissions=["replay"])
    def replay(self, request, queryset):
        sent = services.failed_events_replay(failed=list(queryset))
        skipped = queryset.count() - sent
        messages.success(request, f"Sent {sent} failed event(s) through the pipeline again.")
        if skipped:
            messages.warning(
                request, f"{skipped} were already replayed or have no payload to replay."
            )


@admin.register(InboxRequest)
class InboxRequestAdmin(SystemRecordAdmin):
    workspace_field = "source__workspace"
    list_display = ["id", "source", "door", "status", "received_at", "processed_at"]
    list_filter = ["status", "door"]
    list_select_related = ["source__workspace"]
    exclude = ["body"]
