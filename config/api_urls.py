from rest_framework.routers import DefaultRouter

from experiences.apis import ExperienceViewSet
from profiles.apis import GuestViewSet
from profiles.segment_apis import SegmentViewSet
from tracking.apis import EventViewSet

router = DefaultRouter()
# Both /api/guests/ and /api/guests work; exports read naturally as …/export.csv.
router.trailing_slash = "/?"
router.register("events", EventViewSet, basename="event")
router.register("guests", GuestViewSet, basename="guest")
router.register("segments", SegmentViewSet, basename="segment")
router.register("experiences", ExperienceViewSet, basename="experience")

urlpatterns = router.urls
