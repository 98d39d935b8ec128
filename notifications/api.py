"""Notifications API and the WebSocket address (``/realtime``)."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import services
from notifications.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "data", "read_at", "created_at"]

    def to_representation(self, notification):
        """The one shape of a notification, shared with the ``notification:new`` event."""
        return services.notification_data(notification)

    def generic_representation(self, notification):
        """DRF's rendering of the declared (schema) fields; tests compare it with the above."""
        return super().to_representation(notification)


class NotificationListView(generics.ListAPIView):
    serializer_class = NotificationSerializer

    def get_queryset(self):
        notifications = Notification.objects.filter(user=self.request.user)
        unread = self.request.query_params.get("unread")
        if unread is not None:
            if unread not in ("true", "false"):
                raise serializers.ValidationError({"unread": ["Use true or false."]})
            notifications = notifications.filter(read_at__isnull=unread == "true")
        return notifications

    @extend_schema(
        tags=["notifications"],
        parameters=[OpenApiParameter("unread", bool, description="only unread (or read) ones")],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class UnreadCountView(APIView):
    @extend_schema(
        tags=["notifications"],
        responses={200: inline_serializer("UnreadCount", {"count": serializers.IntegerField()})},
    )
    def get(self, request):
        return Response({"count": services.unread_counts([request.user.pk])[request.user.pk]})


def _own(request, pk) -> Notification:
    return get_object_or_404(Notification, pk=pk, user=request.user)


class NotificationReadView(APIView):
    @extend_schema(tags=["notifications"], request=None, responses={200: NotificationSerializer})
    def post(self, request, pk):
        notification = services.notification_mark_read(notification=_own(request, pk))
        return Response(NotificationSerializer(notification).data)


class NotificationReadAllView(APIView):
    @extend_schema(
        tags=["notifications"],
        request=None,
        responses={200: inline_serializer("ReadAll", {"updated": serializers.IntegerField()})},
    )
    def post(self, request):
        return Response({"updated": services.notifications_mark_all_read(user=request.user)})


class NotificationDetailView(APIView):
    @extend_schema(tags=["notifications"], responses={204: None})
    def delete(self, request, pk):
        services.notification_delete(notification=_own(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RealtimeView(APIView):
    @extend_schema(
        tags=["realtime"],
        responses={200: inline_serializer("Realtime", {"url": serializers.CharField()})},
        description="Where to open the WebSocket event stream: connect to "
        "`<url>?token=<access JWT>[&last_event_id=N]`.",
    )
    def get(self, request):
        return Response({"url": settings.QUICKPE_WEBSOCKET_URL})
