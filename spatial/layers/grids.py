"""Unit grids (单元网格): 15-digit codes (CJ/T 213), one grid member each, tiling their community.

The table keeps a generated EPSG:4544 copy for metre distances; ``grid_parts`` holds the subdivided
pieces used by point lookups, maintained by a trigger.
"""

from sqlalchemy import Column, Integer, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata, metric_copy

table = Table(
    "grids",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("community_code", Text, nullable=False),
    Column("name", Text, nullable=False),
    geometry_column("geom", "MULTIPOLYGON", nullable=False),
    metric_copy("MULTIPOLYGON"),
)

parts = Table(
    "grid_parts",
    metadata,
    Column("generation", Integer, nullable=False),
    Column("grid_code", Text, nullable=False),
    geometry_column("geom", "POLYGON", nullable=False),
    metric_copy("POLYGON"),
)

layer = Layer(
    name="grids",
    table=table,
    label_zh="网格",
    label_en="Grids",
    fields=(
        Field("generation", "integer"),
        Field("code", "text"),
        Field("community_code", "text"),
        Field("name", "text"),
    ),
    key=("generation", "code"),
    geometry_types=("Polygon", "MultiPolygon"),
    published=("code", "name", "community_code", "generation"),
    has_generation=True,
)
