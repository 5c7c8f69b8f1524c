from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from tracking.admin_base import SystemRecordAdmin, WorkspaceScopedAdmin

from .flows import flow_definitions_forget_soon
from .models import Assignment, Experience, FlowExecution, Metric, Variant
from .results import chance, percent
from .results_cache import refresh_queue, results_cached, results_many_cached
from .services import (
    ExperienceRuleError,
    experience_status_set,
    experience_validate,
    variant_controls_release,
)

PALETTE = ["#0b5cad", "#e8710a", "#1a7f37", "#a142f4", "#c62828", "#00838f"]


COMPUTING = format_html('<span class="fp-muted">{}</span>', "computing…")


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


class OptionalJSONField(forms.JSONField):
    """A JSON field that shows nothing, not ``null``, when empty, and reads blank as none."""

    def prepare_value(self, value):
        if value is None:
            return ""
        return super().prepare_value(value)


METRIC_FIELDS = [
    "role",
    "kind",
    "event",
    "condition",
    "property",
    "window_days",
    "guardrail_direction",
    "guardrail_threshold",
    "name",
]


class MetricForm(forms.ModelForm):
    condition = OptionalJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 1, "cols": 16}),
        help_text='optional, e.g. {"property": "revenue", "op": "gte", "value": 20}',
    )

    class Meta:
        model = Metric
        fields = METRIC_FIELDS
        # Narrow inputs, so the whole metrics table fits a 1440 px page.
        widgets = {
            "event": forms.TextInput(attrs={"size": 14}),
            "property": forms.TextInput(attrs={"size": 8}),
            "name": forms.TextInput(attrs={"size": 10}),
            "window_days": forms.NumberInput(attrs={"style": "width: 4em"}),
            "guardrail_threshold": forms.NumberInput(attrs={"style": "width: 4em"}),
        }


class MetricFormSet(forms.BaseInlineFormSet):
    """The metrics as a whole list, checked by the rules (``experience_validate``)."""

    FIELDS = (
        "name",
        "role",
        "kind",
        "event",
        "condition",
        "property",
        "window_days",
        "guardrail_direction",
        "guardrail_threshold",
    )

    def clean(self):
        if not any(self.errors):
            planned = []
            for form in self.forms:
                if self.can_delete and form.cleaned_data.get("DELETE"):
                    continue
                if form.instance.pk is None and not form.has_changed():
                    continue
                item = {k: form.cleaned_data[k] for k in self.FIELDS if k in form.cleaned_data}
                if form.instance.pk is not None:
                    item["ref"] = form.instance.ref
                planned.append(item)
            posted = {form.instance.pk for form in self.initial_forms}
            planned += [{"ref": m.ref} for m in self.get_queryset() if m.pk not in posted]
            try:
                experience_validate(experience=self.instance, changes={}, metrics=planned)
            except ExperienceRuleError as error:
                raise ValidationError(_rule_message(error)) from None
        super().clean()


class MetricInline(admin.TabularInline):
    """One row per metric; the column headers' help is in the section's description."""

    model = Metric
    form = MetricForm
    formset = MetricFormSet
    extra = 0
    fields = [
        "role",
        "kind",
        "event",
        "condition",
        "property",
        "window_days",
        "guardrail_direction",
        "guardrail_threshold",
    ]


@admin.register(Experience)
class ExperienceAdmin(WorkspaceScopedAdmin):
    form = ExperienceForm
    change_form_template = "admin/experiences/experience/change_form.html"
    list_display = [
        "name",
        "friendly_id",
        "workspace",
        "status_badge",
        "exposed",
        "leader",
        "significance",
    ]
    list_filter = ["status", "kind"]
    list_select_related = ["workspace"]
    list_per_page = 50
    search_fields = ["name", "friendly_id"]
    filter_horizontal = ["target_segments", "exclusion_segments"]
    inlines = [VariantInline, MetricInline]
    readonly_fields = ["ref", "live_since"]
    actions = ["launch", "pause", "complete"]

    def get_readonly_fields(self, request, obj=None):
        # Once made, an experience keeps its id (TRACKING events and segment rules name it) and
        # its workspace: the page shows them as text, as the service would refuse a change.
        if obj is None:
            return self.readonly_fields
        return ["workspace", "friendly_id", *self.readonly_fields]

    fieldsets = [
        (None, {"fields": ["workspace", "friendly_id", "name", "kind", "status", "ref"]}),
        ("Analysis", {"fields": ["sequential_testing", "cuped", "correction"]}),
        (
            "Targeting",
            {
                "fields": ["traffic_allocation", "target_segments", "exclusion_segments"],
                "classes": ["collapse"],
            },
        ),
        ("Schedule", {"fields": ["starts_at", "ends_at", "live_since"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("variants", "metrics")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The rows' summaries as kept in the cache, in one read; those missing are queued
        # (computed at once without a broker) and read again.
        rows = list(changelist.result_list)
        kept = results_many_cached(rows)
        missing = [row for row in rows if row.pk not in kept]
        if missing:
            refresh_queue(missing)
            kept |= results_many_cached(missing)
        for row in rows:
            row._summary = kept[row.pk]["summary"] if row.pk in kept else None
        return changelist

    def _summary(self, obj) -> dict | None:
        return getattr(obj, "_summary", None)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        tone = {"live": "good", "paused": "warn", "completed": ""}.get(obj.status, "")
        return format_html(
            '<span class="fp-badge{}">{}</span>',
            f" fp-badge-{tone}" if tone else "",
            obj.get_status_display(),
        )

    @admin.display(description="exposed")
    def exposed(self, obj):
        summary = self._summary(obj)
        return COMPUTING if summary is None else f"{summary['exposed']:,}"

    @admin.display(description="leader")
    def leader(self, obj):
        summary = self._summary(obj)
        if summary is None:
            return COMPUTING
        if summary["sampleRatioMismatch"]:
            return format_html(
                '<span class="fp-badge fp-badge-bad">{}</span>', "sample-ratio mismatch"
            )
        if not summary["leader"]:
            return "–"
        if summary["uplift"] is None:
            return summary["leader"]
        return format_html(
            '{} <span class="fp-muted">{}</span>', summary["leader"], percent(summary["uplift"])
        )

    @admin.display(description="significance")
    def significance(self, obj):
        summary = self._summary(obj)
        if summary is None:
            return COMPUTING
        if summary["leader"] is None:
            return "–"
        if summary["significant"]:
            return format_html('<span class="fp-badge fp-badge-good">{}</span>', "significant")
        likely = summary["chanceToBeatControl"]
        return "not yet" if likely is None else f"not yet ({chance(likely)} chance to win)"

    def save_model(self, request, obj, form, change):
        if obj.status == Experience.Status.LIVE and obj.live_since is None:
            obj.live_since = timezone.now()
        super().save_model(request, obj, form, change)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra_context |= results_context(obj)
        return super().change_view(request, object_id, form_url, extra_context)

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


def results_context(experience: Experience) -> dict:
    """What the results-first page shows: the verdict, tables and Chart.js configs, from the
    results kept in the cache (a refresh is queued when there are none: without a broker it
    runs at once; with one the page says the results are being computed)."""
    kept = results_cached(experience)
    if kept is None:
        refresh_queue([experience])
        kept = results_cached(experience)
    if kept is None:
        return {"results_computing": True}
    results = kept["results"]
    colours = {v["ref"]: PALETTE[i % len(PALETTE)] for i, v in enumerate(results["variants"])}
    control = next((v for v in results["variants"] if v["isControl"]), None)
    metrics = []
    for index, metric in enumerate(results["metrics"]):
        rows = [_metric_row(metric, row) for row in metric["variants"]]
        metrics.append(
            {
                **metric,
                "rows": rows,
                "describe": _describe(metric),
                "chart_id": f"metric-chart-{index}",
                "chart": _uplift_chart(metric, colours),
            }
        )
    events_url = (
        reverse("admin:tracking_event_changelist")
        + "?"
        + urlencode({"type": "TRACKING", "q": experience.friendly_id})
    )
    comparisons = sum(
        1
        for m in results["metrics"]
        if m["role"] != "guardrail"
        for r in m["variants"]
        if not r["isControl"]
    )
    return {
        "results": results,
        "verdict": results["verdict"],
        "metric_cards": metrics,
        "control_name": control["name"] if control else "",
        "exposure_chart": _exposure_chart(results, colours),
        "tracking_events_url": events_url,
        "comparisons": comparisons,
        "days_running": len(results.get("exposuresDaily", [])),
        "results_computed_at": kept["computed_at"],
    }


def _describe(metric: dict) -> str:
    kind = {
        "conversion": "share of guests who did",
        "count": "events per guest:",
        "sum": f"sum of {metric['property']} per guest over",
    }[metric["kind"]]
    text = f"{kind} {metric['event']}"
    if metric["conditionText"]:
        text += f" where {metric['conditionText']}"
    text += f", within {metric['windowDays']} days of first exposure"
    if metric["role"] == "guardrail":
        direction = (metric["guardrailDirection"] or "").replace("_", " ")
        text += f"; {direction} by more than {metric['guardrailThreshold']:g} %"
    return text


def _metric_row(metric: dict, row: dict) -> dict:
    conversion = metric["kind"] == "conversion"
    if conversion:
        value = f"{row['mean']:.2%}"
        total = f"{int(row['total']):,}"
    else:
        value = f"{row['mean']:,.2f}"
        total = f"{row['total']:,.0f}" if metric["kind"] == "count" else f"{row['total']:,.2f}"
    interval = (
        f"{percent(row['upliftLow'])} to {percent(row['upliftHigh'])}"
        if row["upliftLow"] is not None
        else ""
    )
    return {
        **row,
        "value": value,
        "total_text": total,
        "uplift_text": percent(row["uplift"]) if row["uplift"] is not None else "",
        "interval": interval,
        "p_text": "" if row["pValue"] is None else f"{row['pValue']:.3g}",
        "p_adjusted_text": "" if row["pValueAdjusted"] is None else f"{row['pValueAdjusted']:.3g}",
        "chance_text": chance(row["chanceToBeatControl"]),
        "loss_text": "" if row["expectedLoss"] is None else percent(row["expectedLoss"]),
    }


def _uplift_chart(metric: dict, colours: dict) -> dict:
    """Uplift against control over time, one line per variant with its interval as a band."""
    days = metric.get("daily", [])
    labels = [d["date"] for d in days]
    datasets = []
    for variant in metric["variants"]:
        if variant["isControl"]:
            continue
        ref, colour = variant["ref"], colours[variant["ref"]]

        def series(key, ref=ref):
            out = []
            for day in days:
                point = next(p for p in day["variants"] if p["ref"] == ref)
                value = point.get(key)
                out.append(None if value is None else round(value * 100, 2))
            return out

        datasets += [
            {
                "label": f"{variant['name']}: low",
                "data": series("upliftLow"),
                "color": colour,
                "borderWidth": 0,
                "pointRadius": 0,
                "fill": False,
            },
            {
                "label": f"{variant['name']}: interval",
                "data": series("upliftHigh"),
                "color": colour,
                "borderWidth": 0,
                "pointRadius": 0,
                "fill": "-1",
            },
            {
                "label": f"{variant['name']} vs control",
                "data": series("uplift"),
                "color": colour,
                "borderWidth": 2,
                "pointRadius": 2,
                "fill": False,
            },
        ]
    return {
        "type": "line",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "spanGaps": True,
            "plugins": {
                "title": {"display": True, "text": "uplift vs control, % (95 % interval shaded)"},
            },
            "scales": {
                "x": {"title": {"display": True, "text": "day (cumulative)"}},
                "y": {"title": {"display": True, "text": "uplift %"}},
            },
        },
    }


def _exposure_chart(results: dict, colours: dict) -> dict:
    days = results.get("exposuresDaily", [])
    names = {v["ref"]: v["name"] for v in results["variants"]}
    datasets = [
        {
            "label": names[ref],
            "data": [next(p["new"] for p in d["variants"] if p["ref"] == ref) for d in days],
            "color": colours[ref],
        }
        for ref in names
    ]
    return {
        "type": "bar",
        "data": {"labels": [d["date"] for d in days], "datasets": datasets},
        "options": {
            "plugins": {"title": {"display": True, "text": "guests newly exposed per day"}},
            "scales": {
                "x": {"stacked": True, "title": {"display": True, "text": "day"}},
                "y": {"stacked": True, "title": {"display": True, "text": "guests"}},
            },
        },
    }


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
