from rest_framework.pagination import CursorPagination


class CursorPage(CursorPagination):
    """The contract's list shape: ``{next, previous, results}``, newest first."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    ordering = "-created_at"
