"""Street stalls (摊点): licensed or not, in a market or on the street."""

from sqlalchemy import Boolean, Column, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

table = Table(
    "stalls",
    metadata,
    Column("code", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("licensed", Boolean, nullable=False),
    Column("market_code", Text),
    geometry_column("geom", "POINT", nullable=False),
    Column("generation", Integer),
    Column("grid_code", Text),
)

layer = Layer(
    name="stalls",
    table=table,
    label_zh="摊点",
    label_en="Stalls",
    fields=(
        Field("code", "text"),
        Field("kind", "text"),
        Field("licensed", "boolean"),
        Field("market_code", "text", required=False),
    ),
    key=("code",),
    geometry_types=("Point",),
    published=("code", "kind", "licensed", "market_code", "grid_code"),
    assigned=True,
)
