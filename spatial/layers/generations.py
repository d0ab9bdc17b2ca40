"""Boundary generations: each edit of the boundaries is a new generation valid over a time range."""

from sqlalchemy import Column, DateTime, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from spatial.layers.base import Field, Layer, metadata

table = Table(
    "boundary_generations",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("label", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Column("source", Text),
    Column("problems", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

layer = Layer(
    name="boundary_generations",
    table=table,
    label_zh="边界版本",
    label_en="Boundary generations",
    fields=(
        Field("generation", "integer"),
        Field("label", "text"),
        Field("valid_from", "timestamptz"),
        Field("valid_to", "timestamptz", required=False),
        Field("source", "text", required=False),
    ),
    key=("generation",),
    geometry_types=None,
    published=("generation", "label", "valid_from", "valid_to", "source"),
    id_column="generation",
)
