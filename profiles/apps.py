from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"

    def ready(self) -> None:
        from .services import marketers_group_ensure

        # After auth's own post_migrate handler has made the permissions (auth comes first).
        post_migrate.connect(marketers_group_ensure, sender=self)
