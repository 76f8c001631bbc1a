"""New rows for bulk INSERTs without the ORM: built with every column set, then encoded."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Insert, insert, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapper

RowT = TypeVar("RowT")

# How a column's value travels in the JSON of a batch INSERT (PostgreSQL): as is, as an
# ISO 8601 moment, in bytea's hex form, or as its own JSON text.
_AS_IS, _MOMENT, _BYTES, _JSON = range(4)
_FORMS = {"TIMESTAMP WITH TIME ZONE": _MOMENT, "BYTEA": _BYTES, "JSON": _JSON}


@dataclass(frozen=True)
class _Column:
    attribute: str
    name: str
    default: Any  # a scalar default, else None
    make_default: Any  # a default's function, else None
    postgres_type: str
    form: int


_COLUMNS: dict[type, tuple[_Column, ...]] = {}


def _columns(model: type) -> tuple[_Column, ...]:
    if (known := _COLUMNS.get(model)) is not None:
        return known
    mapper: Mapper[Any] = inspect(model)
    dialect = postgresql.dialect()
    columns = []
    for prop in mapper.column_attrs:
        column, default = prop.columns[0], prop.columns[0].default
        kind = column.type.compile(dialect=dialect)
        columns.append(
            _Column(
                attribute=prop.key,
                name=column.key,
                default=default.arg if default is not None and default.is_scalar else None,
                make_default=default.arg if default is not None and default.is_callable else None,
                postgres_type=kind,
                form=_FORMS.get(kind, _AS_IS),
            )
        )
    _COLUMNS[model] = tuple(columns)
    return _COLUMNS[model]


def new_row(model: type[RowT], **values: Any) -> RowT:
    """A new, detached row object with every column set: the value given, else the
    column's default (a scalar, or made by its function), else None.

    Built without SQLAlchemy's per-attribute instrumentation, which made building a job's
    rows cost more than validating its request; and with every column present, reading
    one (rendering the answer, encoding the INSERT) is a plain dictionary read.
    """
    row = inspect(model).class_manager.new_instance()
    state = row.__dict__
    for column in _columns(model):
        if column.attribute in values:
            state[column.attribute] = values.pop(column.attribute)
        elif column.make_default is not None:
            state[column.attribute] = column.make_default(None)
        else:
            state[column.attribute] = column.default
    if values:
        raise TypeError(f"{model.__name__} has no column {', '.join(values)}")
    return row


def insert_rows(objects: Sequence[Any]) -> tuple[Insert, list[dict[str, Any]]]:
    """A Core INSERT and its parameter rows for new ORM objects of one class.

    Bulk inserts skip the ORM's per-object bookkeeping (a large part of a Create's CPU);
    the objects stay as built, detached, for the caller to answer from. An attribute never
    set takes its column's scalar default, as the ORM would give it.
    """
    model = type(objects[0])
    columns = _columns(model)
    rows = []
    for obj in objects:
        state = obj.__dict__
        rows.append(
            {column.name: state.get(column.attribute, column.default) for column in columns}
        )
    return insert(inspect(model).local_table), rows


def json_rows(objects: Sequence[Any]) -> str:
    """New row objects as one JSON array, each value in the text form its column's type
    reads (a JSON column's None as JSON null, as SQLAlchemy binds it): the parameter of
    `insert_from_json`'s statement."""
    if not objects:
        return "[]"
    columns = _columns(type(objects[0]))
    rows = []
    for obj in objects:
        state = obj.__dict__
        row = {}
        for column in columns:
            value = state.get(column.attribute, column.default)
            if column.form == _JSON:
                value = json.dumps(value)  # as SQLAlchemy would store it
            elif value is None:
                pass
            elif column.form == _MOMENT:
                value = value.isoformat()
            elif column.form == _BYTES:
                value = "\\x" + value.hex()
            row[column.name] = value
        rows.append(row)
    # Text as UTF-8, not \u escapes: PostgreSQL reads those only into a UTF-8 database.
    return json.dumps(rows, ensure_ascii=False)


def insert_from_json(model: type, computed: dict[str, str]) -> str:
    """PostgreSQL's INSERT of `model`'s rows from a JSON array parameter (`json_rows`);
    `computed` columns take an SQL expression (over the JSON row `r`) instead."""
    columns = _columns(model)
    names = ", ".join(f'"{c.name}"' for c in columns)
    values = ", ".join(
        computed.get(c.name) or (f'r."{c.name}"::json' if c.form == _JSON else f'r."{c.name}"')
        for c in columns
    )
    shape = ", ".join(
        f'"{c.name}" {"TEXT" if c.form == _JSON else c.postgres_type}' for c in columns
    )
    table: str = inspect(model).local_table.name
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} "
        f"FROM json_to_recordset(%s::json) AS r({shape})"
    )
