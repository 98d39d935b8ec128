"""Database helpers shared by the services."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import DatabaseError, connection

M = TypeVar("M")


@contextmanager
def statement_timeout(milliseconds: int) -> Iterator[None]:
    """Give this connection's statements another time limit (0: none) for the duration, then
    restore the configured one (DATABASE_STATEMENT_TIMEOUT_MS). For background jobs whose
    queries are long by design (a year's statement), not for requests: a persistent connection
    goes back to the pool with the normal limit, so nothing after leaks the longer one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(milliseconds)])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")
        except DatabaseError:
            # Broken or in a failed transaction: drop it rather than reuse it with no limit.
            connection.close()


def fetch_models(model: type[M], sql: str, params: list) -> list[M]:
    """Run hand-written SQL and build model instances the way Django's ORM does (``from_db``).

    For the money hot path only (``quickpe.statements``): compiling an ORM query costs several
    times the query itself, and a transfer runs a dozen of them (docs/performance.md). SELECT
    ``*`` so every field is loaded.
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    return models_from_rows(model, columns, rows)


def models_from_rows(model: type[M], columns: list[str], rows: list[tuple]) -> list[M]:
    """Model instances from rows holding (at least) every column of ``model``, by name; other
    columns are ignored."""
    # from_db expects the model's field order; ``SELECT *`` gives the table's, which differs
    # (migrations append columns). Column names equal attribute names (``<fk>_id`` on both).
    fields = model._meta.concrete_fields
    attnames = [field.attname for field in fields]
    positions = [columns.index(name) for name in attnames]
    # Fields that convert what the driver returns (JSONField parses its text) do so as in the ORM.
    converters = [getattr(field, "from_db_value", None) for field in fields]
    return [
        model.from_db(
            connection.alias,
            attnames,
            [
                row[index] if convert is None else convert(row[index], None, connection)
                for index, convert in zip(positions, converters, strict=True)
            ],
        )
        for row in rows
    ]


def insert_statement(
    objects: list, *, expressions: dict[str, str] | None = None
) -> tuple[str, list]:
    """``INSERT INTO <table> (<columns>) VALUES (...), ...`` for unsaved instances of one model,
    and its parameters: what ``insert_models`` runs, for callers that embed the INSERT in a
    larger statement (a CTE) to save a round trip. ``expressions`` gives some columns an SQL
    expression instead of the instances' values (a key a sibling CTE returns).

    What ``bulk_create`` does for us, without the query compiler (see ``fetch_models``): each
    field's ``pre_save`` and ``get_db_prep_save`` run as in Django, so defaults, ``auto_now``
    and JSON adaptation behave the same; no signals are sent (we use none).
    """
    expressions = expressions or {}
    meta = type(objects[0])._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    valued = [field for field in fields if field.column not in expressions]
    row = "(" + ", ".join(expressions.get(field.column, "%s") for field in fields) + ")"
    statement = (
        f"INSERT INTO {meta.db_table} ({', '.join(field.column for field in fields)})"  # noqa: S608 - names come from the model
        f" VALUES {', '.join([row] * len(objects))}"
    )
    params = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for instance in objects
        for field in valued
    ]
    return statement, params


def keys_assign(objects: list, keys: list) -> list:
    """Mark inserted instances saved, with the primary keys RETURNING gave (in VALUES order)."""
    for instance, key in zip(objects, keys, strict=True):
        instance.pk = key
        instance._state.adding = False
        instance._state.db = connection.alias
    return objects


def insert_models(objects: list[M]) -> list[M]:
    """INSERT unsaved instances of one model in one statement and set their primary keys."""
    statement, params = insert_statement(objects)
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {type(objects[0])._meta.pk.column}", params)
        keys = [key for (key,) in cursor.fetchall()]
    return keys_assign(objects, keys)
