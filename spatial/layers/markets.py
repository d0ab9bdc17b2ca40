"""Markets and business premises (市场, 经营场所) rectified by the campaign."""

from sqlalchemy import Column, Date, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

table = Table(
    "markets",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("rectified_at", Date),
    geometry_column("geom", "POLYGON", nullable=False),
    Column("generation", Integer),
    Column("grid_code", Text),
)

layer = Layer(
    name="markets",
    table=table,
    label_zh="市场",
    label_en="Markets",
    fields=(
        Field("code", "text"),
        Field("name", "text"),
        Field("kind", "text"),
        Field("rectified_at", "date", required=False),
    ),
    key=("code",),
    geometry_types=("Polygon",),
    published=("code", "name", "kind", "rectified_at", "grid_code"),
    assigned=True,
)
