import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from tracking import channels


class Guest(models.Model):
    """One person, anonymous (visitor) or known (customer)."""

    class Type(models.TextChoices):
        VISITOR = "visitor", "Visitor"
        CUSTOMER = "customer", "Customer"

    # Unique with the workspace (ref first, so a lookup by ref alone uses the index): a table
    # distributed by workspace_id can only enforce keys that include it.
    ref = models.UUIDField(default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    guest_type = models.CharField(max_length=8, choices=Type.choices, default=Type.VISITOR)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    email = models.CharField(max_length=254, blank=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    # Set when this guest was merged into another; its ref keeps resolving to that guest.
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ref", "workspace"], name="guest_unique_ref"),
        ]
        indexes = [
            models.Index(fields=["workspace", "-last_seen"], name="guest_ws_last_seen_idx"),
            # The guest list's order across workspaces (an operator's list): walked to the
            # page's last row instead of sorting every guest. Updating last_seen rewrites the
            # row's index entries anyway (it is in the index above), so this one costs little.
            models.Index(fields=["-last_seen", "-id"], name="guest_last_seen_idx"),
            models.Index(fields=["workspace", "email"], name="guest_ws_email_idx"),
        ]

    def __str__(self) -> str:
        return self.email or str(self.ref)


class Identity(models.Model):
    """A (kind, value) pointing at one guest of a workspace."""

    class Kind(models.TextChoices):
        USER_ID = "user_id", "User id"
        ANONYMOUS_ID = "anonymous_id", "Anonymous id"
        EMAIL = "email", "Email"
        DEVICE_ID = "device_id", "Device id"
        BROWSER = "browser", "Browser"
        # The previousId of an alias. An alias does not say whether it was a userId or an
        # anonymousId, so it stands for both: a later userId or anonymousId of that value
        # belongs to the same guest.
        PREVIOUS_ID = "previous_id", "Previous id"

    # The kinds a previous id matches.
    PREVIOUS_ID_MATCHES = (Kind.USER_ID, Kind.ANONYMOUS_ID)
    # Kinds that do not say who the person is: which browser or device was used, or an
    # alias's previous id (which may have been anonymous). Every other kind (user_id, email,
    # any provider's id) makes its guest a known customer.
    ANONYMOUS_KINDS = frozenset({Kind.ANONYMOUS_ID, Kind.DEVICE_ID, Kind.BROWSER, Kind.PREVIOUS_ID})

    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="identities")
    # One of Kind, or a free "provider:<name>" for any other identifier system.
    kind = models.CharField(max_length=64)
    value = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "kind", "value"], name="identity_unique_per_workspace"
            ),
        ]
        indexes = [models.Index(fields=["value"], name="identity_value_idx")]

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"

    @classmethod
    def kind_is_known(cls, kind: str) -> bool:
        return kind not in cls.ANONYMOUS_KINDS

    @classmethod
    def kinds_matched(cls, kind: str) -> tuple[str, ...]:
        """The kinds of identifier that an identity of ``kind`` is found by."""
        return cls.PREVIOUS_ID_MATCHES if kind == cls.Kind.PREVIOUS_ID else (kind,)


class Session(models.Model):
    """A guest's run of activity on one channel, ended by inactivity or a forced close."""

    class Status(models.TextChoices):
        OPEN = "OPEN", "Open"
        CLOSED = "CLOSED", "Closed"

    # Unique with the workspace (ref first, so a lookup by ref alone uses the index): a table
    # distributed by workspace_id can only enforce keys that include it.
    ref = models.UUIDField(default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="sessions")
    channel = models.CharField(max_length=32, blank=True, help_text=channels.HELP_TEXT)
    # The id the client gave the session (context.sessionId, sid, SessionId); blank if derived.
    client_session_id = models.CharField(max_length=255, blank=True)
    # The browser or device it ran on, when the event said so.
    device = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OPEN)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(help_text="Time of the session's last event.")
    duration = models.DurationField(default=timedelta)
    closed_at = models.DateTimeField(null=True, blank=True)
    # A forced close (FORCE_CLOSE) seals the session: later events open a new one.
    force_closed = models.BooleanField(default=False)
    event_count = models.PositiveIntegerField(default=0)
    page_view_count = models.PositiveIntegerField(default=0)
    first_page = models.CharField(max_length=2048, blank=True)
    first_page_at = models.DateTimeField(null=True, blank=True)
    last_page = models.CharField(max_length=2048, blank=True)
    last_page_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ref", "workspace"], name="session_unique_ref"),
            models.UniqueConstraint(
                fields=["workspace", "client_session_id"],
                condition=~models.Q(client_session_id=""),
                name="session_unique_client_id",
            ),
        ]
        indexes = [
            models.Index(fields=["guest", "channel", "-ended_at"], name="session_guest_idx"),
            models.Index(fields=["-started_at"], name="session_started_idx"),
            models.Index(
                fields=["ended_at"],
                condition=models.Q(status="OPEN"),
                name="session_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel or 'session'} {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def channel_label(self) -> str:
        return channels.channel_label(self.channel)

    @property
    def duration_label(self) -> str:
        """The duration to the second, as a person reads it (``0:07:15``, never microseconds)."""
        return str(timedelta(seconds=int(self.duration.total_seconds())))


class GuestMerge(models.Model):
    """The record of one guest merged into another: who, when and why."""

    class Reason(models.TextChoices):
        SHARED_IDENTIFIER = "shared_identifier", "One event carried identifiers of both"
        ALIAS = "alias", "alias call"
        MANUAL = "manual", "Merged by a user"

    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="merges")
    merged_ref = models.UUIDField(help_text="The ref of the guest that was merged away.")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    message_id = models.CharField(max_length=255, blank=True, help_text="The event that did it.")
    merged_by = models.CharField(max_length=150, default="pipeline")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.merged_ref} → {self.guest_id} ({self.reason})"


class Erasure(models.Model):
    """The audit row an erasure leaves. It holds no personal data."""

    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    guest_ref = models.UUIDField()
    erased_by = models.CharField(max_length=150)
    erased_at = models.DateTimeField(default=timezone.now)
    events = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    identities = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-erased_at"]

    def __str__(self) -> str:
        return f"erasure of {self.guest_ref}"


class SuppressedIdentity(models.Model):
    """An erased guest's identifier, kept only as a keyed hash, so its later events are dropped."""

    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64)
    erasure = models.ForeignKey(Erasure, on_delete=models.CASCADE, related_name="suppressed")

    class Meta:
        verbose_name_plural = "suppressed identities"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "digest"], name="suppressed_identity_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.digest[:12]


class Segment(models.Model):
    """A named rule over a workspace's guests; its members are recomputed by Celery."""

    workspace = models.ForeignKey("tracking.Workspace", on_delete=models.CASCADE, related_name="+")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rule = models.JSONField(help_text="The rule, as JSON (see the README's Segments section).")
    is_active = models.BooleanField(default=True)
    recompute_every = models.DurationField(
        default=timedelta(hours=1),
        null=True,
        blank=True,
        help_text="How often beat recomputes it in full; empty: only on demand and incrementally.",
    )
    # Runs take increasing versions; a run applies only if no newer full run has.
    version = models.PositiveBigIntegerField(default=0, editable=False)
    applied_version = models.PositiveBigIntegerField(default=0, editable=False)
    computed_at = models.DateTimeField(null=True, blank=True, editable=False)
    member_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="segment_unique_slug"),
        ]

    def __str__(self) -> str:
        return self.name

    # Written only by runs (``profiles.segments``), never by saving an edited segment.
    RUN_FIELDS = frozenset({"version", "applied_version", "computed_at", "member_count"})

    def save(self, *args, **kwargs):
        if (
            self.pk is not None
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
        ):
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.RUN_FIELDS
            ]
        super().save(*args, **kwargs)

    @property
    def recompute_every_minutes(self) -> int | None:
        if self.recompute_every is None:
            return None
        return int(self.recompute_every.total_seconds() // 60)


class SegmentMembership(models.Model):
    """A guest's stay in a segment: from when it entered until it left (open while a member)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="memberships")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "guest"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_one_open_per_guest",
            ),
        ]
        indexes = [
            models.Index(fields=["guest"], name="membership_guest_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.guest_id} in {self.segment_id}"


class SegmentRun(models.Model):
    """One recompute of a segment, kept for the admin and for debugging."""

    class Kind(models.TextChoices):
        FULL = "full", "Full"
        INCREMENTAL = "incremental", "Incremental"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="runs")
    version = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    guests_checked = models.PositiveIntegerField(null=True, blank=True)
    entered = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    stale = models.BooleanField(default=False, help_text="A newer run had already applied.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.segment} v{self.version} ({self.kind})"


class DirtyGuest(models.Model):
    """A guest whose events changed since segments last looked: queued for incremental runs."""

    guest_id = models.BigIntegerField(primary_key=True)
    workspace_id = models.BigIntegerField()
    marked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return str(self.guest_id)


class GuestDay(models.Model):
    """A day (UTC) on which a guest was active: how the pipeline counts each guest once a day.
    Days older than ``GuestRollup.DAYS_KEPT`` are forgotten by the daily sweep."""

    workspace_id = models.BigIntegerField()
    day = models.DateField()
    guest_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["guest_id", "day"], name="guest_day_key"),
        ]
        indexes = [models.Index(fields=["day"], name="guest_day_day_idx")]

    def __str__(self) -> str:
        return f"{self.guest_id} on {self.day}"


class GuestRollup(models.Model):
    """Per workspace and day (UTC): the guests active that day, split into new ones (first
    seen that day) and returning ones, and how many of them were identified customers."""

    DAYS_KEPT = 120

    workspace = models.ForeignKey(
        "tracking.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    new_guests = models.PositiveIntegerField(default=0)
    returning_guests = models.PositiveIntegerField(default=0)
    identified_guests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "day"], name="guest_rollup_key"),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.new_guests} new, {self.returning_guests} returning"
