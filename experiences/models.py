import builtins
import secrets
import uuid

from django.db import models
from django.utils import timezone


def seed_new() -> str:
    return secrets.token_hex(8)


class Experience(models.Model):
    """A personalisation flow, optionally an experiment with variants."""

    class Kind(models.TextChoices):
        WEB = "web", "Web"
        INTERACTIVE = "interactive", "Interactive"
        TRIGGERED = "triggered", "Triggered"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"

    class Correction(models.TextChoices):
        HOLM = "holm", "Holm–Bonferroni (family-wise error)"
        BH = "bh", "Benjamini–Hochberg (false discovery rate)"

    # Unique with the workspace (ref first, so a lookup by ref alone uses the index): a table
    # distributed by workspace_id can only enforce keys that include it.
    ref = models.UUIDField(default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    friendly_id = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.WEB)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # Hashed with each guest's ref to place the guest; never changes once the experience runs.
    seed = models.CharField(max_length=32, default=seed_new, editable=False)
    traffic_allocation = models.PositiveSmallIntegerField(
        default=100, help_text="Percent of eligible guests who take part."
    )
    target_segments = models.ManyToManyField(
        "profiles.Segment", blank=True, related_name="+", help_text="Members of any of these."
    )
    exclusion_segments = models.ManyToManyField(
        "profiles.Segment", blank=True, related_name="+", help_text="Never members of these."
    )
    # How results are judged (experiences/stats.py).
    sequential_testing = models.BooleanField(
        default=True,
        help_text="Always-valid results: safe to look every day and stop when they are clear.",
    )
    cuped = models.BooleanField(
        default=True,
        verbose_name="CUPED",
        help_text="Reduce variance with each guest's same metric in the 14 days before exposure.",
    )
    correction = models.CharField(
        max_length=4,
        choices=Correction.choices,
        default=Correction.HOLM,
        help_text="How p-values are corrected across variants and primary/secondary metrics.",
    )
    live_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When it first went live."
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["ref", "workspace"], name="experience_unique_ref"),
            models.UniqueConstraint(
                fields=["workspace", "friendly_id"], name="experience_unique_friendly_id"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Metric(models.Model):
    """What an experience is judged on: one primary, any secondary and guardrail metrics.

    Every kind looks at the guest's events named ``event`` after their first exposure and
    within ``window_days`` of it (and matching ``condition`` when given): a conversion is
    whether there was one, a count how many, a sum the total of the numeric ``property``.
    """

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        SECONDARY = "secondary", "Secondary"
        GUARDRAIL = "guardrail", "Guardrail"

    class Kind(models.TextChoices):
        CONVERSION = "conversion", "Conversion"
        COUNT = "count", "Count per guest"
        SUM = "sum", "Sum per guest"

    class Direction(models.TextChoices):
        MUST_NOT_DROP = "must_not_drop", "must not drop"
        MUST_NOT_RISE = "must_not_rise", "must not rise"

    experience = models.ForeignKey(Experience, on_delete=models.CASCADE, related_name="metrics")
    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True, help_text="Shown in results; optional.")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.PRIMARY)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CONVERSION)
    event = models.CharField(max_length=255)
    condition = models.JSONField(
        null=True, blank=True, help_text='Optional {"property": P, "op": OP, "value": V}.'
    )
    property = models.CharField(
        max_length=255, blank=True, help_text="For a sum: the numeric event property, e.g. revenue."
    )
    window_days = models.PositiveSmallIntegerField(default=14, verbose_name="days")
    guardrail_direction = models.CharField(
        max_length=13,
        choices=Direction.choices,
        blank=True,
        verbose_name="guardrail",
        help_text="For a guardrail: which way it must not move.",
    )
    guardrail_threshold = models.FloatField(
        null=True,
        blank=True,
        verbose_name="by %",
        help_text="For a guardrail: the change allowed, in percent.",
    )

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.label

    @builtins.property  # the field ``property`` shadows the builtin in this class body
    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind == self.Kind.COUNT:
            return f"{self.event} per guest"
        if self.kind == self.Kind.SUM:
            return f"{self.property} per guest ({self.event})"
        return self.event


class Variant(models.Model):
    experience = models.ForeignKey(Experience, on_delete=models.CASCADE, related_name="variants")
    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    weight = models.PositiveIntegerField(default=50)
    is_control = models.BooleanField(default=False)
    content = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["experience", "name"], name="variant_unique_name"),
            models.UniqueConstraint(
                fields=["experience"],
                condition=models.Q(is_control=True),
                name="variant_one_control",
                violation_error_message="at most one variant is the control",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Assignment(models.Model):
    """The variant a guest got: sticky, whatever the weights or allocation later become."""

    experience = models.ForeignKey(Experience, on_delete=models.CASCADE, related_name="+")
    guest = models.ForeignKey("profiles.Guest", on_delete=models.CASCADE, related_name="+")
    # A variant guests were given is never deleted (weight it to 0): that would erase their
    # assignment; deleting the whole experience still takes its assignments with it.
    variant = models.ForeignKey(Variant, on_delete=models.RESTRICT, related_name="+")
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experience", "guest"], name="assignment_one_per_guest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.guest_id} → {self.variant_id}"


class FlowExecution(models.Model):
    """One run of an experience for a guest; it leaves exactly one TRACKING event."""

    class Status(models.TextChoices):
        SUCCESS = "SUCCESS", "Success"
        FAILURE = "FAILURE", "Failure"

    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    experience = models.ForeignKey(Experience, on_delete=models.CASCADE, related_name="+")
    # Exposures are the results: kept like assignments (see Assignment.variant).
    variant = models.ForeignKey(Variant, on_delete=models.RESTRICT, related_name="+")
    guest = models.ForeignKey("profiles.Guest", on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(
        "profiles.Session", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    browser_ref = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    execution_time_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.SUCCESS)

    class Meta:
        indexes = [models.Index(fields=["experience", "occurred_at"], name="flow_exp_time_idx")]

    def __str__(self) -> str:
        return str(self.ref)
