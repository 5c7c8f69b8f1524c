"""Footprint's admin site: the dashboard as its home page and a navigation grouped by what
marketers do. The site's guards live in ``tracking.admin_base``; this top-layer subclass adds
what needs every app."""

from __future__ import annotations

from django.template.response import TemplateResponse

from tracking.admin_base import FootprintAdminSite

# Sections of the navigation, in order: (title, [(app_label, ModelName), …]). Each shows the
# models the user's permissions allow (a Marketers member has none of Settings). Models no
# section names (identities, merges, runs, flow executions, …: what the pipeline records and
# the guest and experience pages already show) go to "Records", which only superusers see;
# their pages stay where they were.
SECTIONS = [
    ("Audience", [("profiles", "Guest"), ("profiles", "Segment")]),
    ("Activity", [("tracking", "Event"), ("profiles", "Session")]),
    ("Experiences", [("experiences", "Experience")]),
    (
        "Sources and pipeline",
        [("tracking", "Source"), ("tracking", "FailedEvent"), ("tracking", "InboxRequest")],
    ),
    (
        "Settings",
        [
            ("tracking", "Workspace"),
            ("auth", "User"),
            ("auth", "Group"),
            ("authtoken", "TokenProxy"),
        ],
    ),
]
RECORDS = "Records"


class FootprintSite(FootprintAdminSite):
    index_template = "admin/index.html"

    def index(self, request, extra_context=None):
        from .dashboard import dashboard

        context = {
            **self.each_context(request),
            "title": "Home",
            "subtitle": None,
            **dashboard(request),
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.index_template, context)

    def get_app_list(self, request, app_label=None):
        if app_label is not None:
            return super().get_app_list(request, app_label)
        models = {
            (app["app_label"], model["object_name"]): model
            for app in super().get_app_list(request)
            for model in app["models"]
        }
        sections = []
        placed = set()
        for title, wanted in SECTIONS:
            placed.update(wanted)
            found = [models[key] for key in wanted if key in models]
            if found:
                sections.append(_section(title, found))
        if request.user.is_superuser:
            rest = [model for key, model in models.items() if key not in placed]
            if rest:
                sections.append(_section(RECORDS, sorted(rest, key=lambda m: m["name"])))
        return sections


def _section(title: str, models: list[dict]) -> dict:
    return {
        "name": title,
        "app_label": title.lower().replace(" ", "-"),
        "app_url": models[0]["admin_url"],
        "has_module_perms": True,
        "models": models,
    }
