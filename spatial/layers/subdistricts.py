"""Subdistricts (街道): the level that holds an enforcement squad and answers for its area."""

from sqlalchemy import Column, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

table = Table(
    "subdistricts",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("name_en", Text),
    geometry_column("geom", "MULTIPOLYGON", nullable=False),
)

layer = Layer(
    name="subdistricts",
    table=table,
    label_zh="街道",
    label_en="Subdistricts",
    fields=(
        Field("generation", "integer"),
        Field("code", "text"),
        Field("name", "text"),
        Field("name_en", "text", required=False),
    ),
    key=("generation", "code"),
    geometry_types=("Polygon", "MultiPolygon"),
    published=("code", "name", "name_en", "generation"),
    has_generation=True,
)
