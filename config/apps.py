from django.contrib.admin.apps import AdminConfig


class FootprintAdminConfig(AdminConfig):
    """Django's admin on Footprint's site, which guards every registered admin."""

    default_site = "tracking.admin_base.FootprintAdminSite"
