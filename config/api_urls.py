from rest_framework.routers import DefaultRouter

from profiles.apis import GuestViewSet
from tracking.apis import EventViewSet

router = DefaultRouter()
router.register("events", EventViewSet, basename="event")
router.register("guests", GuestViewSet, basename="guest")

urlpatterns = router.urls
