from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from tracking.admin_base import WorkspaceScopedAdmin
from tracking.models import Event

from .models import Assignment, Experience, FlowExecution, Variant
from .results import experience_results
from .selectors import flow_definitions_forget_soon
from .services import experiences_status_set

CHART_WIDTH, BAR_HEIGHT, GAP = 420, 22, 10


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0
    fields = ["name", "weight", "is_control", "content", "ref"]
    readonly_fields = ["ref"]


@admin.register(Experience)
class ExperienceAdmin(WorkspaceScopedAdmin):
    list_display = ["name", "friendly_id", "workspace", "kind", "status", "traffic_allocation"]
    list_filter = ["status", "kind"]
    list_select_related = ["workspace"]
    search_fields = ["name", "friendly_id"]
    filter_horizontal = ["target_segments", "exclusion_segments"]
    inlines = [VariantInline]
    readonly_fields = ["ref", "results_table", "tracking_events"]
    actions = ["launch", "pause", "complete"]
    fieldsets = [
        (None, {"fields": ["workspace", "friendly_id", "name", "kind", "status", "ref"]}),
        ("Audience", {"fields": ["traffic_allocation", "target_segments", "exclusion_segments"]}),
        ("Goal", {"fields": ["goal_event", "goal_condition", "goal_window_days"]}),
        ("Schedule", {"fields": ["starts_at", "ends_at"]}),
        ("Results", {"fields": ["results_table", "tracking_events"]}),
    ]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        flow_definitions_forget_soon()

    def _status(self, request, queryset, status, verb):
        changed = experiences_status_set(experiences=queryset, status=status)
        messages.success(request, f"{verb} {changed} experience(s).")

    @admin.action(description="Launch (live)", permissions=["change"])
    def launch(self, request, queryset):
        self._status(request, queryset, Experience.Status.LIVE, "Launched")

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request, queryset):
        self._status(request, queryset, Experience.Status.PAUSED, "Paused")

    @admin.action(description="Complete", permissions=["change"])
    def complete(self, request, queryset):
        self._status(request, queryset, Experience.Status.COMPLETED, "Completed")

    @admin.display(description="results")
    def results_table(self, obj):
        if obj.pk is None:
            return "-"
        # The stored experience: a form shown again with errors has put its input on ``obj``.
        results = experience_results(Experience.objects.get(pk=obj.pk))
        rows = [
            format_html(
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                "<td>{}</td></tr>",
                row["name"],
                " (control)" if row["is_control"] else "",
                row["exposed"],
                row["converted"],
                f"{row['conversion_rate']:.2%}",
                _percent_range(row),
                "-" if row["p_value"] is None else f"{row['p_value']:.4f}",
                "-"
                if row["chance_to_beat_control"] is None
                else f"{row['chance_to_beat_control']:.1%}",
            )
            for row in results["variants"]
        ]
        ratio = results["sampleRatio"]
        warning = (
            format_html(
                '<p class="errornote">Sample ratio mismatch: the split differs from the weights '
                "(chi-square {}, p = {}). Check the assignment before trusting results."
                "</p>",
                f"{ratio['chiSquare']:.1f}",
                f"{ratio['pValue']:.2g}",
            )
            if ratio["mismatch"]
            else ""
        )
        table = format_html(
            "<table><thead><tr><th>Variant</th><th>Exposed</th><th>Converted</th><th>Rate</th>"
            "<th>Uplift (95% interval)</th><th>p-value</th><th>Chance to beat control</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            mark_safe("".join(str(row) for row in rows)),  # noqa: S308 - parts are escaped
        )
        return format_html("{}{}{}", warning, table, _chart(results["variants"]))

    @admin.display(description="latest TRACKING events")
    def tracking_events(self, obj):
        if obj.pk is None:
            return "-"
        events = Event.objects.filter(
            workspace_id=obj.workspace_id, type="TRACKING", name=obj.friendly_id
        ).order_by("-timestamp", "-id")[:20]
        items = [
            format_html(
                '<li><a href="{}">{}</a> {}</li>',
                reverse("admin:tracking_event_change", args=[event.pk]),
                f"{event.timestamp:%Y-%m-%d %H:%M:%S}",
                (event.properties or {}).get("variant", ""),
            )
            for event in events
        ]
        if not items:
            return "-"
        return format_html("<ul>{}</ul>", mark_safe("".join(str(i) for i in items)))  # noqa: S308


def _percent_range(row) -> str:
    if row["uplift"] is None:
        return "-"
    return f"{row['uplift']:+.1%} ({row['uplift_low']:+.1%} … {row['uplift_high']:+.1%})"


def _chart(variants: list[dict]) -> str:
    """Conversion rate per variant with its 95% interval, as inline SVG (no scripts, no CDN)."""
    import math

    bounds = []
    for row in variants:
        n, p = row["exposed"], row["conversion_rate"]
        spread = 1.96 * math.sqrt(p * (1 - p) / n) if n else 0.0
        bounds.append((max(0.0, p - spread), min(1.0, p + spread)))
    top = max([high for _, high in bounds] + [0.01])
    label_width = 90
    scale = (CHART_WIDTH - label_width - 60) / top
    height = len(variants) * (BAR_HEIGHT + GAP) + GAP
    parts = []
    for index, (row, (low, high)) in enumerate(zip(variants, bounds, strict=True)):
        y = GAP + index * (BAR_HEIGHT + GAP)
        width = row["conversion_rate"] * scale
        parts.append(
            format_html(
                '<text x="0" y="{}" font-size="12">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#333" stroke-width="2"/>'
                '<text x="{}" y="{}" font-size="11">{}</text>',
                y + BAR_HEIGHT * 0.7,
                row["name"],
                label_width,
                y,
                f"{width:.1f}",
                BAR_HEIGHT,
                "#8a8a8a" if row["is_control"] else "#417690",
                f"{label_width + low * scale:.1f}",
                f"{label_width + high * scale:.1f}",
                y + BAR_HEIGHT / 2,
                y + BAR_HEIGHT / 2,
                f"{label_width + high * scale + 4:.1f}",
                y + BAR_HEIGHT * 0.7,
                f"{row['conversion_rate']:.2%}",
            )
        )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" '
        'aria-label="conversion rate per variant with 95% intervals">{}</svg>',
        CHART_WIDTH,
        height,
        mark_safe("".join(str(part) for part in parts)),  # noqa: S308 - parts are escaped
    )


@admin.register(FlowExecution)
class FlowExecutionAdmin(WorkspaceScopedAdmin):
    workspace_field = "experience__workspace"
    list_display = ["occurred_at", "experience", "variant", "guest", "status", "execution_time_ms"]
    list_filter = ["status"]
    list_select_related = ["experience", "variant", "guest"]
    raw_id_fields = ["guest", "session"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Assignment)
class AssignmentAdmin(WorkspaceScopedAdmin):
    workspace_field = "experience__workspace"
    list_display = ["assigned_at", "experience", "variant", "guest"]
    list_select_related = ["experience", "variant", "guest"]
    raw_id_fields = ["guest"]
