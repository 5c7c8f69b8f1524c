from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"

    def ready(self) -> None:
        from .services import marketers_group_ensure

        # After auth's own post_migrate handler has made each app's permissions (auth comes
        # first), for every app: the group also reads experiences, migrated after profiles.
        post_migrate.connect(marketers_group_ensure, dispatch_uid="profiles-marketers-group")
