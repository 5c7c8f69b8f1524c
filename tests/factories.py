"""factory_boy factories; workspaces and sources go through the services that number them."""

import factory
from django.contrib.auth import get_user_model

from experiences.models import Experience, Variant
from tracking import services
from tracking.models import Source, Workspace


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
