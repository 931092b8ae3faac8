"""SQLAlchemy tables owned by the `miners` package, on its own MetaData (one Alembic history covers all)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Same naming convention in every package so Alembic emits stable constraint names on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for the `miners` package's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata
