"""Streets: a street chief (街长) answers for each street that signed a responsibility letter."""

from sqlalchemy import Column, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata, metric_copy

table = Table(
    "streets",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    geometry_column("geom", "LINESTRING", nullable=False),
    metric_copy("LINESTRING"),
)

layer = Layer(
    name="streets",
    table=table,
    label_zh="街道路网",
    label_en="Streets",
    fields=(Field("code", "text"), Field("name", "text"), Field("kind", "text")),
    key=("code",),
    geometry_types=("LineString",),
    published=("code", "name", "kind"),
)
