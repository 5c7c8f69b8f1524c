import uuid

from django.db import models


class Guest(models.Model):
    """One person, anonymous (visitor) or known (customer)."""

    class Type(models.TextChoices):
        VISITOR = "visitor", "Visitor"
        CUSTOMER = "customer", "Customer"

    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
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
        indexes = [
            models.Index(fields=["workspace", "-last_seen"], name="guest_ws_last_seen_idx"),
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

    # Kinds that say who a person is, as opposed to which device they used.
    KNOWN_KINDS = frozenset({Kind.USER_ID, Kind.EMAIL})

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
