"""Joint enforcement operations (综合执法行动), located at their main site."""

from sqlalchemy import Column, Date, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

table = Table(
    "operations",
    metadata,
    Column("code", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("theme", Text, nullable=False),
    Column("held_on", Date, nullable=False),
    Column("subdistrict_code", Text, nullable=False),
    Column("participants", Integer, nullable=False),
    geometry_column("geom", "POINT", nullable=False),
)

layer = Layer(
    name="operations",
    table=table,
    label_zh="联合执法行动",
    label_en="Joint operations",
    fields=(
        Field("code", "text"),
        Field("title", "text"),
        Field("theme", "text"),
        Field("held_on", "date"),
        Field("subdistrict_code", "text"),
        Field("participants", "integer"),
    ),
    key=("code",),
    geometry_types=("Point",),
    published=("code", "title", "theme", "held_on", "subdistrict_code", "participants"),
)
