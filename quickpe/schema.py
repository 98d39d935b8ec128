"""OpenAPI: every operation documents the problem+json errors it can answer with."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated

PROBLEM = inline_serializer(
    "Problem",
    {
        "type": serializers.CharField(help_text="urn:quickpe:problem:<code>"),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "code": serializers.CharField(help_text="Stable, machine-readable"),
        "errors": inline_serializer(
            "ProblemFieldError",
            {
                "field": serializers.CharField(allow_null=True),
                "code": serializers.CharField(),
                "detail": serializers.CharField(),
                "limit": serializers.CharField(required=False),
                "remaining": serializers.CharField(required=False),
            },
            many=True,
        ),
    },
)


class ProblemAutoSchema(AutoSchema):
    """Adds the problem+json responses an operation can give: the common ones (400; 401 for
    authenticated views; 403 where a permission beyond signing in is needed; 404 for paths with
    an id; 413 and 415 for operations with a body; 429 for throttled views; 503 for all) plus
    whatever the view declares in ``problem_responses`` (status -> description)."""

    def _get_parameters(self):
        # An optional query parameter sent empty (`?status=`, as an HTML form sends an unset
        # field) means "not given": DRF's serializers, django-filter and the paginator agree.
        parameters = super()._get_parameters()
        for parameter in parameters:
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = {"400": "Invalid input (`validation_error`, `malformed_request`, ...)"}
        if self.method == "GET" and self._is_list_view() and self._get_paginator():
            errors["400"] += "; a `cursor` this list did not give out (`invalid_cursor`)"
        if self.view.authentication_classes:
            errors["401"] = (
                "Missing, invalid or expired token (`not_authenticated`, `invalid_token`)"
            )
        if any(
            permission not in (AllowAny, IsAuthenticated)
            for permission in getattr(self.view, "permission_classes", [])
        ):
            errors["403"] = "Not allowed for your account (`permission_denied`)"
        if "{" in self.path:
            errors["404"] = "Not found; another user's object is also 404"
        if self.method in ("POST", "PUT", "PATCH") and self._get_request_body():
            errors["413"] = "The body is larger than the server takes (`payload_too_large`)"
            errors["415"] = "The body is not JSON (`unsupported_media_type`)"
        if self.view.get_throttles():
            errors["429"] = "Rate limited (`rate_limited`); see the Retry-After header"
        errors.update(getattr(self.view, "problem_responses", {}))
        # Any operation reads or writes PostgreSQL, so any may meet a lock timeout or an outage.
        errors["503"] = (
            "Retry after the Retry-After header: `busy` (a lock or statement timeout; nothing "
            "changed) or `unavailable` (the database cannot be reached right now)"
        )
        for status, description in errors.items():
            if status in responses:
                continue
            response = self._get_response_for_code(PROBLEM, status, [], direction)
            content = response.get("content", {})
            if "application/json" in content:
                content["application/problem+json"] = content.pop("application/json")
            responses[status] = {**response, "description": description}
        return responses


class QuickPeJWTScheme(SimpleJWTScheme):
    """Document our JWT authentication (a simplejwt subclass) as simplejwt's bearer scheme."""

    target_class = "quickpe.authentication.QuickPeJWTAuthentication"
