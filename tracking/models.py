import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTransform

from . import channels


def _key_new() -> str:
    """A random URL-safe key that does not start with "-": on a command line such a key would
    read as an option (``import_events --write-key -x…`` fails)."""
    while True:
        key = secrets.token_urlsafe(24)
        if not key.startswith("-"):
            return key


def client_key_new() -> str:
    return _key_new()


def write_key_new() -> str:
    return _key_new()


def write_key_digest(write_key: str) -> str:
    return hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).hexdigest()


class Workspace(models.Model):
    """One business account; owns sources, guests, segments and experiences."""

    name = models.CharField(max_length=200, unique=True)
    portal_id = models.PositiveIntegerField(unique=True, editable=False)
    client_key = models.CharField(max_length=64, unique=True, default=client_key_new)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="workspaces"
    )
    session_timeout = models.DurationField(
        default=timedelta(minutes=30), help_text="Inactivity that ends a session."
    )
    anonymize_ip = models.BooleanField(
        default=False,
        help_text="Zero the last octet of IPv4 and the last 80 bits of IPv6 addresses before "
        "they are stored.",
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Events, emptied sessions, failed events and processed requests older than "
        "this many days are purged. Empty: kept forever.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Source(models.Model):
    """One data source of a workspace: a website, an app, a point of sale or a server."""

    class Kind(models.TextChoices):
        WEB = "web", "Web"
        IOS = "ios", "iOS"
        ANDROID = "android", "Android"
        POS = "pos", "Point of sale"
        SERVER = "server", "Server"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEB)
    prop_id = models.PositiveIntegerField(unique=True, editable=False)
    write_key = models.CharField(max_length=64, default=write_key_new)
    # Looked up by digest so a key is never compared character by character.
    write_key_digest = models.CharField(max_length=64, unique=True, editable=False)
    dedup_window = models.DurationField(
        default=timedelta(hours=12), help_text="A repeated messageId within this window is dropped."
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Browser origins allowed to send, e.g. ["https://shop.example"]. Empty: any.',
    )
    allowed_redirect_hosts = models.JSONField(
        default=list, blank=True, help_text="Hosts /collect may redirect to."
    )
    rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per second this source may send (0: unlimited). Empty: the "
        "server's default.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="source_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} / {self.name}"

    def origin_allowed(self, origin: str) -> bool:
        return not self.allowed_origins or origin in self.allowed_origins


class Door(models.TextChoices):
    """The front door an event came in by."""

    SEGMENT = "segment", "Segment spec (/v1)"
    PERSONALIZE = "personalize", "Flow executions (/v2/callFlows)"
    STREAM = "stream", "Sitecore Stream API (/v1.2)"
    OPTIMIZELY = "optimizely", "Optimizely Tracking API (/api/v1.0)"
    COLLECT = "collect", "Event Track API (/collect)"


class InboxRequest(models.Model):
    """One accepted request, stored raw before it is answered; processed later by Celery."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # Indexed with the row's id (below), for a source's latest requests (its debugger). No
    # constraint in the database: every accepted request inserts a row, and PostgreSQL checks a
    # foreign key by share-locking the source's row, so concurrent requests of one source
    # queue on that lock (6-50 % fewer inserts a second at 8 clients). A source is only ever
    # deleted through Django, which deletes its requests with it.
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    door = models.CharField(max_length=16, choices=Door.choices, default=Door.SEGMENT)
    # The decompressed request body exactly as received.
    body = models.BinaryField()
    # Door-specific request facts the parser needs (route type, headers that carry data).
    meta = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # How many messages the request held, counted when it was processed (accepted ones and
    # those refused, which are its failed events).
    message_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["id"], condition=Q(status="pending"), name="inbox_pending_idx"),
            models.Index(fields=["source", "-id"], name="inbox_source_id_idx"),
        ]

    def __str__(self) -> str:
        return f"inbox #{self.pk} ({self.status})"


class Event(models.Model):
    """One thing a guest did, stored once whatever door it came in by."""

    # No single-column indexes on workspace and guest: the composite indexes below start with
    # them, and every index is paid for on each of the many inserts.
    # No database constraints either: PostgreSQL checks a foreign key row by row (four lookups
    # an event, each locking its parent row FOR KEY SHARE, run at commit while the batch still
    # holds its guests' locks), which cost the drain's COPY more than the COPY itself. The
    # pipeline is what sets these ids (from the locked guests, the sessions it just placed and
    # the inbox row's source), and Django still cascades deletes and sets a deleted session to
    # null, as it always did.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    guest = models.ForeignKey(
        "profiles.Guest",
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    session = models.ForeignKey(
        "profiles.Session",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        db_constraint=False,
    )
    door = models.CharField(max_length=16, choices=Door.choices, default=Door.SEGMENT)
    # Segment-spec types are lower case (track, page, …); Sitecore types upper case (VIEW, ADD,
    # TRACKING or a custom name of up to 50 characters).
    type = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True)
    message_id = models.CharField(max_length=255)
    user_id = models.CharField(max_length=255, blank=True)
    anonymous_id = models.CharField(max_length=255, blank=True)
    group_id = models.CharField(max_length=255, blank=True)
    previous_id = models.CharField(max_length=255, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    integrations = models.JSONField(null=True, blank=True)
    # The event exactly as its door received it, for doors whose wire format is not the stored
    # Segment-spec shape (a Sitecore message, an Optimizely TrackEvent, a /collect hit).
    payload = models.JSONField(null=True, blank=True)
    timestamp = models.DateTimeField()
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    timestamp_clamped = models.BooleanField(
        default=False, help_text="The sent timestamp lay too far in the future and was replaced."
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    channel = models.CharField(max_length=32, blank=True, help_text=channels.HELP_TEXT)
    revenue = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    value = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-timestamp"], name="event_ws_ts_idx"),
            models.Index(fields=["-timestamp", "-id"], name="event_ts_idx"),
            models.Index(fields=["guest", "-timestamp"], name="event_guest_ts_idx"),
            models.Index(fields=["workspace", "type", "name"], name="event_ws_type_name_idx"),
            # guest_id included: a segment's event condition counts per guest from the index alone.
            models.Index(
                fields=["workspace", "name", "-timestamp"],
                include=["guest"],
                name="event_ws_name_ts_idx",
            ),
            models.Index(fields=["workspace", "message_id"], name="event_ws_message_idx"),
            # TRACKING events by experience and variant, newest first (the events list's
            # experience and variant filters): only a tenth of the events, so it costs the
            # inserts little, and the planner walks it to the page's last row.
            models.Index(
                "workspace",
                "name",
                KeyTransform("variant", "properties"),
                models.F("timestamp").desc(),
                condition=Q(type="TRACKING"),
                name="event_tracking_variant_idx",
            ),
            # The same across workspaces: an operator's unscoped list walks this one.
            models.Index(
                "name",
                KeyTransform("variant", "properties"),
                models.F("timestamp").desc(),
                condition=Q(type="TRACKING"),
                name="event_tracking_variant_all_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name}".strip()

    @property
    def channel_label(self) -> str:
        return channels.channel_label(self.channel)


class DedupKey(models.Model):
    """The first messageId seen in a workspace, remembered until its window ends."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=255)
    received_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    # The inbox request whose processing claimed the key, when the drain claimed it ahead of
    # that request's transaction (committed at once, so that other drains never wait for it):
    # the same request processed again after a rollback or a crash still wins its keys. No
    # database constraint, as for failed events: the inbox is local to one database server.
    inbox_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "message_id"], name="dedup_key_unique"),
        ]

    def __str__(self) -> str:
        return self.message_id


class FailedEvent(models.Model):
    """A message that did not pass validation, kept with its reason for inspection and replay."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    # No database constraint: the inbox is a queue local to one database server, while failed
    # events can be distributed by workspace (config/distribution.py). Django still sets it to
    # null when the request is deleted.
    inbox = models.ForeignKey(
        InboxRequest,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    door = models.CharField(max_length=16, choices=Door.choices, default=Door.SEGMENT)
    code = models.CharField(max_length=64)
    reason = models.TextField()
    field = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A line of a file read by ``manage.py import_events``: the file's name, the line's number
    # and the line's key (its content's hash and how many identical lines came before it), so
    # importing the file again records the line once.
    import_file = models.CharField(max_length=255, blank=True)
    import_line = models.PositiveBigIntegerField(null=True, blank=True)
    import_key = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "import_key"],
                condition=~Q(import_key=""),
                name="failed_event_import_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class EventRollup(models.Model):
    """How many events a workspace's source stored per hour (of their timestamp, UTC), type
    and name. The pipeline adds to it in the transaction that stores the events, so the
    dashboard reads these counts instead of counting the events table."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    type = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "hour", "source", "type", "name"], name="event_rollup_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.type} {self.name}: {self.n}"


class EventTypeRollup(models.Model):
    """``EventRollup`` without the event name: events per workspace, hour, source and type.
    A few rows an hour, so the dashboard's charts over 30 days read thousands of rows, not
    hundreds of thousands. Kept in the same statement as ``EventRollup``."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    type = models.CharField(max_length=64)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "hour", "source", "type"], name="event_type_rollup_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.type}: {self.n}"


class FailedEventRollup(models.Model):
    """How many messages of a workspace's source were refused per hour (received, UTC) and
    reason code; added to as the refused messages are recorded."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    code = models.CharField(max_length=64)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "hour", "source", "code"], name="failed_rollup_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.code}: {self.n}"


class CatalogueEvent(models.Model):
    """An event name a workspace has sent: when first and last (by event time) and how often."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    name = models.CharField(max_length=255)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="catalogue_event_key"),
        ]

    def __str__(self) -> str:
        return self.name


class CatalogueKey(models.Model):
    """A trait (set by identify-like events) or an event property a workspace has sent, with
    a few example values."""

    class Kind(models.TextChoices):
        TRAIT = "trait", "Trait"
        PROPERTY = "property", "Property"

    EXAMPLES = 5

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # The event the property came with; "" for traits.
    event_name = models.CharField(max_length=255, blank=True)
    key = models.CharField(max_length=255)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    # Up to EXAMPLES distinct short values, as text (values that look personal are left out).
    examples = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["kind", "event_name", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "kind", "event_name", "key"], name="catalogue_key_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name}.{self.key}" if self.event_name else self.key
