from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from experiences.views import call_flows
from tracking import views as doors
from tracking.metrics import metrics_view

SEGMENT_ROUTES = "|".join(
    ["track", "identify", "page", "screen", "group", "alias", "batch", "import"]
    + ["t", "i", "p", "s", "g", "a", "b"]
)

# The admin is Footprint's home page; its header links to the API docs. "View site" would only
# lead back here, so the admin shows none.
admin.site.site_header = "Footprint"
admin.site.site_title = "Footprint"
admin.site.index_title = "Home"
admin.site.site_url = None

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    re_path(rf"^v1/(?P<route>{SEGMENT_ROUTES})/?$", doors.segment_door, name="segment-door"),
    path("v1/projects/<str:write_key>/settings", doors.segment_settings, name="segment-settings"),
    path("v2/callFlows", call_flows, name="call-flows"),
    path("v1.2/browser/create.json", doors.stream_browser_create, name="stream-browser-create"),
    path("v1.2/event/create.json", doors.stream_event_create, name="stream-event-create"),
    path("collect", doors.collect_door, name="collect-door"),
    re_path(
        r"^api/v1\.0/(?P<route>(?i:Track|TrackBulk))/?$",
        doors.optimizely_door,
        name="optimizely-door",
    ),
    path("api/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", doors.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
