from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from tracking.admin_base import SystemRecordAdmin, WorkspaceScopedAdmin
from tracking.models import Event

from .flows import flow_definitions_forget_soon
from .models import Assignment, Experience, FlowExecution, Variant
from .results import experience_results
from .services import (
    ExperienceRuleError,
    experience_status_set,
    experience_validate,
    variant_controls_release,
)

CHART_WIDTH, BAR_HEIGHT, GAP = 420, 22, 10


def _rule_message(error: ExperienceRuleError) -> str:
    return f"{error.path}: {error.message}" if error.path else error.message


class ExperienceForm(forms.ModelForm):
    """The experience page, checked by the same rules as the API (``experience_validate``)."""

    # Set by ExperienceAdmin.get_form: the variants inline is saved with this form, and checks
    # the status together with the variants it will have.
    variants_follow = False

    def clean(self):
        data = super().clean()
        changes = dict(data)
        if self.variants_follow:
            changes.pop("status", None)
        try:
            # self.instance is still the stored experience: the form applies its data later.
            experience_validate(experience=self.instance, changes=changes)
        except ExperienceRuleError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, _rule_message(error))
        return data


class VariantFormSet(forms.BaseInlineFormSet):
    """The variants as a whole list: one control at most, a variant guests were assigned to
    kept (weight it to 0 instead), and a live experience with some weight."""

    FIELDS = ("name", "weight", "is_control", "content")

    def clean(self):
        # Before Django's own checks, so that a refusal reads as the rules word it.
        if not any(self.errors):
            self._rules_check()
        super().clean()

    def _rules_check(self):
        planned = []
        for form in self.forms:
            if self.can_delete and form.cleaned_data.get("DELETE"):
                continue
            if form.instance.pk is None and not form.has_changed():
                continue  # an extra row left empty
            item = {key: form.cleaned_data[key] for key in self.FIELDS if key in form.cleaned_data}
            if form.instance.pk is not None:
                item["ref"] = form.instance.ref
            planned.append(item)
        # Stored variants missing from the post are kept as they are, not removed.
        posted = {form.instance.pk for form in self.initial_forms}
        planned += [{"ref": v.ref} for v in self.get_queryset() if v.pk not in posted]
        # self.instance has the page's new values; the status is checked here, with the
        # variants it goes with.
        try:
            experience_validate(
                experience=self.instance, changes={"status": self.instance.status}, variants=planned
            )
        except ExperienceRuleError as error:
            raise ValidationError(_rule_message(error)) from None

    def save(self, commit=True):
        if commit:
            variant_controls_release(
                experience=self.instance,
                refs=[
                    form.instance.ref
                    for form in self.initial_forms
                    if form.cleaned_data.get("DELETE") or not form.cleaned_data.get("is_control")
                ],
            )
        return super().save(commit)


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet
    extra = 0
    fields = ["name", "weight", "is_control", "content", "ref"]
    readonly_fields = ["ref"]


@admin.register(Experience)
class ExperienceAdmin(WorkspaceScopedAdmin):
    form = ExperienceForm
    list_display = ["name", "friendly_id", "workspace", "kind", "status", "traffic_allocation"]
    list_filter = ["status", "kind"]
    list_select_related = ["workspace"]
    search_fields = ["name", "friendly_id"]
    filter_horizontal = ["target_segments", "exclusion_segments"]
    inlines = [VariantInline]
    readonly_fields = ["ref", "results_table", "tracking_events"]
    actions = ["launch", "pause", "complete"]

    def get_readonly_fields(self, request, obj=None):
        # Once made, an experience keeps its id (TRACKING events and segment rules name it) and
        # its workspace: the page shows them as text, as the service would refuse a change.
        if obj is None:
            return self.readonly_fields
        return ["workspace", "friendly_id", *self.readonly_fields]

    fieldsets = [
        (None, {"fields": ["workspace", "friendly_id", "name", "kind", "status", "ref"]}),
        ("Audience", {"fields": ["traffic_allocation", "target_segments", "exclusion_segments"]}),
        ("Goal", {"fields": ["goal_event", "goal_condition", "goal_window_days"]}),
        ("Schedule", {"fields": ["starts_at", "ends_at"]}),
        ("Results", {"fields": ["results_table", "tracking_events"]}),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.variants_follow = any(
            isinstance(inline, VariantInline) for inline in self.get_inline_instances(request, obj)
        )
        return form

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        flow_definitions_forget_soon()

    def _status(self, request, queryset, status, verb):
        changed = 0
        for experience in queryset:
            try:
                experience_status_set(experience=experience, status=status)
            except ExperienceRuleError as error:
                messages.error(request, f"{experience}: {_rule_message(error)}")
            else:
                changed += 1
        if changed:
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
                " (control)" if row["isControl"] else "",
                row["exposed"],
                row["converted"],
                f"{row['conversionRate']:.2%}",
                _percent_range(row),
                "-" if row["pValue"] is None else f"{row['pValue']:.4f}",
                "-" if row["chanceToBeatControl"] is None else f"{row['chanceToBeatControl']:.1%}",
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
    return f"{row['uplift']:+.1%} ({row['upliftLow']:+.1%} … {row['upliftHigh']:+.1%})"


def _chart(variants: list[dict]) -> str:
    """Conversion rate per variant with its 95% interval, as inline SVG (no scripts, no CDN)."""
    import math

    bounds = []
    for row in variants:
        n, p = row["exposed"], row["conversionRate"]
        spread = 1.96 * math.sqrt(p * (1 - p) / n) if n else 0.0
        bounds.append((max(0.0, p - spread), min(1.0, p + spread)))
    top = max([high for _, high in bounds] + [0.01])
    label_width = 90
    scale = (CHART_WIDTH - label_width - 60) / top
    height = len(variants) * (BAR_HEIGHT + GAP) + GAP
    parts = []
    for index, (row, (low, high)) in enumerate(zip(variants, bounds, strict=True)):
        y = GAP + index * (BAR_HEIGHT + GAP)
        width = row["conversionRate"] * scale
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
                "#8a8a8a" if row["isControl"] else "#417690",
                f"{label_width + low * scale:.1f}",
                f"{label_width + high * scale:.1f}",
                y + BAR_HEIGHT / 2,
                y + BAR_HEIGHT / 2,
                f"{label_width + high * scale + 4:.1f}",
                y + BAR_HEIGHT * 0.7,
                f"{row['conversionRate']:.2%}",
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
class FlowExecutionAdmin(SystemRecordAdmin):
    workspace_field = "experience__workspace"
    list_display = ["occurred_at", "experience", "variant", "guest", "status", "execution_time_ms"]
    list_filter = ["status"]
    list_select_related = ["experience", "variant", "guest"]
    raw_id_fields = ["guest", "session"]


@admin.register(Assignment)
class AssignmentAdmin(SystemRecordAdmin):
    workspace_field = "experience__workspace"
    list_display = ["assigned_at", "experience", "variant", "guest"]
    list_select_related = ["experience", "variant", "guest"]
    raw_id_fields = ["guest"]
