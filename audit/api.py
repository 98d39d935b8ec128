from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEntry
from audit.services import audit_verify, entry_data
from quickpe.authentication import staff_with


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "seq",
            "action",
            "entity_type",
            "entity_id",
            "data",
            "ip",
            "user_agent",
            "created_at",
            "hash",
        ]

    def to_representation(self, entry):
        """The one shape of an entry, shared with the ``audit:new`` event."""
        return entry_data(entry)

    def generic_representation(self, entry):
        """DRF's rendering of the declared (schema) fields; tests compare it with the above."""
        return super().to_representation(entry)


class AuditListView(generics.ListAPIView):
    """The caller's own audit entries, newest first."""

    serializer_class = AuditEntrySerializer
    ordering = "-seq"

    def get_queryset(self):
        return AuditEntry.objects.filter(actor=self.request.user)

    def paginate_queryset(self, queryset):
        self.paginator.ordering = "-seq"
        return super().paginate_queryset(queryset)

    @extend_schema(tags=["audit"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AuditVerifyView(APIView):
    # As the admin's verify page: compliance and superusers (wallet migration 0005).
    permission_classes = [staff_with("audit.verify_chain")]

    @extend_schema(
        tags=["audit"],
        description="Staff with `audit.verify_chain` (compliance) only. Walks every chain; "
        "see README 'Audit chain'.",
        responses={
            200: inline_serializer(
                "AuditVerifyResult",
                {
                    "valid": serializers.BooleanField(),
                    "checked": serializers.IntegerField(),
                    "head": inline_serializer(
                        "AuditHead",
                        {
                            "seq": serializers.IntegerField(allow_null=True),
                            "hash": serializers.CharField(allow_null=True),
                        },
                    ),
                    "first_invalid_seq": serializers.IntegerField(allow_null=True),
                    "reason": serializers.CharField(),
                },
            )
        },
    )
    def get(self, request):
        result = audit_verify()
        return Response(
            {
                "valid": result.valid,
                "checked": result.checked,
                "head": {"seq": result.head_seq, "hash": result.head_hash},
                "first_invalid_seq": result.first_invalid_seq,
                "reason": result.reason,
            }
        )
