"""Communities (社区): 12-digit codes, each inside one subdistrict."""

from sqlalchemy import Column, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

table = Table(
    "communities",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("subdistrict_code", Text, nullable=False),
    Column("name", Text, nullable=False),
    geometry_column("geom", "MULTIPOLYGON", nullable=False),
)

layer = Layer(
    name="communities",
    table=table,
    label_zh="社区",
    label_en="Communities",
    fields=(
        Field("generation", "integer"),
        Field("code", "text"),
        Field("subdistrict_code", "text"),
        Field("name", "text"),
    ),
    key=("generation", "code"),
    geometry_types=("Polygon", "MultiPolygon"),
    published=("code", "name", "subdistrict_code", "generation"),
    has_generation=True,
)
