"""The one pagination of every API list: opaque cursors, newest first.

A cursor is only ever one this server wrote (``next``/``previous``), but a client can send
anything: one that does not decode, or whose position is not a value of the ordering field
(the position goes into a ``WHERE``), is ``400 invalid_cursor``, never a 404 or a database
error."""

from django.core import exceptions as django_exceptions
from django.core.exceptions import FieldDoesNotExist
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from quickpe.errors import QuickPeError


class InvalidCursor(QuickPeError):
    status, code = 400, "invalid_cursor"
    default_detail = "The cursor is not one this list gave out; start again without it."


class CursorPage(CursorPagination):
    """The contract's list shape: ``{next, previous, results}``, newest first."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    ordering = "-created_at"

    def get_page_size(self, request):
        # DRF quietly falls back to the default on "abc" or 0; the schema says 1 to 100.
        text = request.query_params.get(self.page_size_query_param)
        if not text:  # absent, or sent empty: the default
            return self.page_size
        # At most three digits before int(): a 5000-digit number is past int()'s own limit.
        if not (len(text) <= 3 and text.isascii() and text.isdigit()) or not (
            1 <= int(text) <= self.max_page_size
        ):
            message = f"Use a whole number from 1 to {self.max_page_size}."
            raise ValidationError({self.page_size_query_param: [message]})
        return int(text)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                }
        return parameters

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        if not request.query_params.get(self.cursor_query_param):  # `?cursor=`: the first page
            return None
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        if cursor is not None and cursor.position is not None:
            self._check_position(cursor.position)
        return cursor

    def _check_position(self, position: str) -> None:
        """The position must be a value of the first ordering field, as the database takes it
        (its type, range and length); PostgreSQL text never holds NUL."""
        ordering = self.ordering if isinstance(self.ordering, list | tuple) else [self.ordering]
        name = ordering[0].lstrip("-")
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:  # an annotation: its type is unknown here, refuse nothing
            return
        if "\x00" in position:
            raise InvalidCursor()
        try:
            field.clean(position, None)
        except django_exceptions.ValidationError:
            raise InvalidCursor() from None
