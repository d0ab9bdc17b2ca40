"""Rivers: the river chief (河长) answers for points within reach of a river."""

from sqlalchemy import Column, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata, metric_copy

table = Table(
    "rivers",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    geometry_column("geom", "MULTILINESTRING", nullable=False),
    metric_copy("MULTILINESTRING"),
)

layer = Layer(
    name="rivers",
    table=table,
    label_zh="河道",
    label_en="Rivers",
    fields=(Field("code", "text"), Field("name", "text")),
    key=("code",),
    geometry_types=("LineString", "MultiLineString"),
    published=("code", "name"),
)
