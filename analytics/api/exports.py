"""Exports API: request a statement or audit trail, follow it, download it."""

from datetime import timedelta

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.models import CUSTOMER_KINDS, Export
from analytics.representations import export_data
from analytics.services import NotReady, export_create, exports_storage
from quickpe.business_day import business_day, day_bounds
from quickpe.errors import NotFound
from quickpe.throttling import ExportRateThrottle
from wallet.api.fields import DateOrDateTime

DEFAULT_DAYS = 30
CONTENT_TYPES = {"pdf": "application/pdf", "csv": "text/csv; charset=utf-8"}


class ExportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=CUSTOMER_KINDS)
    format = serializers.ChoiceField(choices=Export.Format.choices)
    status = serializers.ChoiceField(choices=Export.Status.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    rows = serializers.IntegerField(help_text="Lines written so far (all of them once done).")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.CharField(allow_null=True, help_text="Set once `done`.")
    error = serializers.CharField(allow_null=True, help_text="Why it failed, in words.")

    def get_fields(self):
        # `from` and `to` are Python keywords: declare them by name.
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(help_text="Start of the period (inclusive).")
        fields["to"] = serializers.DateTimeField(help_text="End of the period (exclusive).")
        return fields

    def to_representation(self, export):
        return export_data(export)


class ExportRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CUSTOMER_KINDS)
    format = serializers.ChoiceField(choices=Export.Format.choices)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = DateOrDateTime(
            end_of_day=False, help_text=f"Default: {DEFAULT_DAYS - 1} days before today (IST)."
        )
        fields["to"] = DateOrDateTime(
            end_of_day=True, help_text="A date includes that whole day. Default: today (IST)."
        )
        return fields

    def validate(self, attrs):
        today = business_day()
        first_day, end_of_today = day_bounds(today - timedelta(days=DEFAULT_DAYS - 1), today)
        start = attrs.get("from") or first_day
        end = attrs.get("to") or end_of_today
        if start >= end:
            raise serializers.ValidationError({"to": "Must be after `from`."})
        return {"kind": attrs["kind"], "format": attrs["format"], "start": start, "end": end}


class ExportListCreateView(generics.ListAPIView):
    serializer_class = ExportSerializer

    def get_throttles(self):
        return [ExportRateThrottle()] if self.request.method == "POST" else []

    def get_queryset(self):
        return own_exports(self.request.user)

    @extend_schema(tags=["exports"], description="Your exports, newest first (kept 7 days).")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=ExportRequestSerializer,
        responses={202: ExportSerializer},
        tags=["exports"],
        description="Queue a statement or audit trail as PDF or CSV; a worker builds it and "
        "`export:update` events report progress and completion (plus an `export_ready` "
        "notification). Rate-limited per user (QUICKPE_EXPORT_RATE, default 10/h): 429.",
    )
    def post(self, request):
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = export_create(
            user=request.user,
            kind=data.validated_data["kind"],
            format=data.validated_data["format"],
            period_start=data.validated_data["start"],
            period_end=data.validated_data["end"],
            request=request,
        )
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailView(generics.RetrieveAPIView):
    serializer_class = ExportSerializer

    def get_queryset(self):
        return own_exports(self.request.user)

    @extend_schema(tags=["exports"], description="Your export; anyone else's is 404.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExportDownloadView(APIView):
    problem_responses = {"404": "`not_found`", "409": "`not_ready`: not built yet (or failed)"}

    def perform_content_negotiation(self, request, force=False):
        # The file goes out in its own type whatever Accept names (DRF would answer 406 to
        # `Accept: application/pdf`); refusals stay problem+json.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        responses={
            # Generic clients (openapi-python-client among them) read a body as bytes only
            # when its declared type is octet-stream, so that comes first; see below.
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
        },
        tags=["exports"],
        description="The file, as an attachment: `application/pdf` or `text/csv`, or "
        "`application/octet-stream` when `Accept` asks for that and not the file's own type. "
        "409 `not_ready` until the export is `done`.",
    )
    def get(self, request, pk: int):
        export = own_exports(request.user).filter(pk=pk).first()
        if export is None:
            raise NotFound("No such export.")
        response = file_response(export)
        if request.accepts("application/octet-stream") and not request.accepts(
            CONTENT_TYPES[export.format].split(";")[0]
        ):
            response["Content-Type"] = "application/octet-stream"
        return response


def own_exports(user):
    """The user's exports that the API shows: statements and their own audit trails (audit-log
    exports of compliance staff live in the admin)."""
    return Export.objects.filter(user=user, kind__in=CUSTOMER_KINDS)


def file_response(export: Export) -> FileResponse:
    """The built file as an attachment; NotReady until the export is done. The caller has
    already checked that ``export`` belongs to whoever asks."""
    if export.status != Export.Status.DONE:
        raise NotReady(f"The export is {export.status}.")
    start = business_day(export.period_start)
    name = f"quickpe-{export.kind}-{export.user.quickpe_id}-{start:%Y%m%d}-{export.pk}"
    return FileResponse(
        exports_storage().open(export.file, "rb"),
        as_attachment=True,
        filename=f"{name}.{export.format}",
        content_type=CONTENT_TYPES[export.format],
    )
