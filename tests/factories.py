"""factory_boy factories; workspaces and sources go through the services that number them.

Each factory makes one valid row whose related rows share one workspace: an event's guest
belongs to its source's workspace, a flow execution's variant to its experience. Times default
to ``timezone.now()`` read when the row is made, so the ``clock`` fixture sets them too.

For many rows at once, build them and insert them in one statement:
``Guest.objects.bulk_create(GuestFactory.build_batch(1000, workspace=workspace))``.
"""

import factory
import orjson
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from experiences.models import Assignment, Experience, FlowExecution, Variant
from profiles.models import Guest, Identity, Segment, SegmentMembership, Session
from tracking import services
from tracking.models import Event, FailedEvent, InboxRequest, Source, Workspace


def now():
    # Looked up on each call, not bound once, so that a patched clock is honoured.
    return timezone.now()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def workspaces(self, create, extracted, **kwargs):
        if create and extracted:
            self.workspaces.add(*extracted)
        if create:
            self.save()


class TokenFactory(factory.django.DjangoModelFactory):
    """A read API token; its ``key`` goes in ``Authorization: Token <key>``."""

    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")

    @classmethod
    def _create(cls, model_class, *args, name, **kwargs):
        return services.workspace_create(name=name)


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Source {n}")
    kind = Source.Kind.WEB

    @classmethod
    def _create(cls, model_class, *args, workspace, name, kind, **options):
        return services.source_create(workspace=workspace, name=name, kind=kind, **options)


class InboxRequestFactory(factory.django.DjangoModelFactory):
    """A pending /v1/batch request as the door leaves it; ``batch`` gives its messages."""

    class Meta:
        model = InboxRequest

    class Params:
        batch = ()

    source = factory.SubFactory(SourceFactory)
    body = factory.LazyAttribute(lambda row: orjson.dumps({"batch": list(row.batch)}))
    meta = factory.Dict({"route": "batch"})
    received_at = factory.LazyFunction(now)


class GuestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Guest

    workspace = factory.SubFactory(WorkspaceFactory)
    first_seen = factory.LazyFunction(now)
    last_seen = factory.SelfAttribute("first_seen")


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    guest = factory.SubFactory(GuestFactory)
    workspace = factory.SelfAttribute("guest.workspace")
    kind = Identity.Kind.USER_ID
    value = factory.Sequence(lambda n: f"user-{n}")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    guest = factory.SubFactory(GuestFactory)
    workspace = factory.SelfAttribute("guest.workspace")
    started_at = factory.LazyFunction(now)
    ended_at = factory.SelfAttribute("started_at")


class EventFactory(factory.django.DjangoModelFactory):
    """A stored track event of a guest of the source's workspace."""

    class Meta:
        model = Event

    source = factory.SubFactory(SourceFactory)
    workspace = factory.SelfAttribute("source.workspace")
    guest = factory.SubFactory(GuestFactory, workspace=factory.SelfAttribute("..workspace"))
    type = "track"
    name = "Played"
    message_id = factory.Sequence(lambda n: f"m{n}")
    timestamp = factory.LazyFunction(now)
    received_at = factory.SelfAttribute("timestamp")


class FailedEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FailedEvent

    source = factory.SubFactory(SourceFactory)
    workspace = factory.SelfAttribute("source.workspace")
    code = "missing_field"
    reason = "event is required"
    field = "event"
    payload = factory.Dict({"type": "track", "userId": "user-1"})
    received_at = factory.LazyFunction(now)


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    workspace = factory.SubFactory(WorkspaceFactory)
    slug = factory.Sequence(lambda n: f"segment-{n}")
    name = factory.Sequence(lambda n: f"Segment {n}")
    # A valid rule (``all`` takes at least one node): every guest of type visitor or customer.
    rule = factory.Dict(
        {
            "field": factory.Dict(
                {"name": "guest_type", "op": "in", "value": ["visitor", "customer"]}
            )
        }
    )


class SegmentMembershipFactory(factory.django.DjangoModelFactory):
    """An open stay (``exited_at`` empty) of a guest of the segment's workspace."""

    class Meta:
        model = SegmentMembership

    segment = factory.SubFactory(SegmentFactory)
    guest = factory.SubFactory(GuestFactory, workspace=factory.SelfAttribute("..segment.workspace"))
    entered_at = factory.LazyFunction(now)


class ExperienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experience

    workspace = factory.SubFactory(WorkspaceFactory)
    friendly_id = factory.Sequence(lambda n: f"experience_{n}")
    name = factory.Sequence(lambda n: f"Experience {n}")


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    experience = factory.SubFactory(ExperienceFactory)
    name = factory.Sequence(lambda n: f"Variant {n}")


class AssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Assignment

    experience = factory.SubFactory(ExperienceFactory)
    variant = factory.SubFactory(VariantFactory, experience=factory.SelfAttribute("..experience"))
    guest = factory.SubFactory(
        GuestFactory, workspace=factory.SelfAttribute("..experience.workspace")
    )


class FlowExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FlowExecution

    experience = factory.SubFactory(ExperienceFactory)
    variant = factory.SubFactory(VariantFactory, experience=factory.SelfAttribute("..experience"))
    guest = factory.SubFactory(
        GuestFactory, workspace=factory.SelfAttribute("..experience.workspace")
    )
