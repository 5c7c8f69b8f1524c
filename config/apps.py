from django.contrib.admin.apps import AdminConfig


class FootprintAdminConfig(AdminConfig):
    """Django's admin on Footprint's site, which guards every registered admin."""

    default_site = "config.admin_site.FootprintSite"
