from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking"

    def ready(self) -> None:
        from config.lib.periodic import embedded_beat_start_if_wanted

        embedded_beat_start_if_wanted()
