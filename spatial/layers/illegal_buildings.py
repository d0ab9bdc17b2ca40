"""Illegal-building footprints (违法建筑), from discovery to demolition.

Their path: discovered → investigated → notice served → scheduled → demolished (or legalised).
``footprint_m2`` is measured in EPSG:4544 by the database.
"""

from sqlalchemy import Column, Date, Float, Integer, SmallInteger, Table, Text

from spatial.layers.base import Field, Layer, geometry_column, metadata

STATUSES = ("discovered", "investigated", "notice_served", "scheduled", "demolished", "legalised")

table = Table(
    "illegal_buildings",
    metadata,
    Column("code", Text, primary_key=True),
    Column("address", Text, nullable=False),
    Column("campaign", Text),
    Column("floors", SmallInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("discovered_at", Date, nullable=False),
    Column("investigated_at", Date),
    Column("notice_served_at", Date),
    Column("scheduled_at", Date),
    Column("demolished_at", Date),
    Column("legalised_at", Date),
    geometry_column("geom", "POLYGON", nullable=False),
    Column("footprint_m2", Float),
    Column("demolished_m2", Float),
    Column("generation", Integer),
    Column("grid_code", Text),
)

layer = Layer(
    name="illegal_buildings",
    table=table,
    label_zh="违法建筑",
    label_en="Illegal buildings",
    fields=(
        Field("code", "text"),
        Field("address", "text"),
        Field("campaign", "text", required=False),
        Field("floors", "smallint"),
        Field("status", "text"),
        Field("discovered_at", "date"),
        Field("investigated_at", "date", required=False),
        Field("notice_served_at", "date", required=False),
        Field("scheduled_at", "date", required=False),
        Field("demolished_at", "date", required=False),
        Field("legalised_at", "date", required=False),
        Field("demolished_m2", "double precision", required=False),
    ),
    key=("code",),
    geometry_types=("Polygon",),
    published=(
        "code",
        "address",
        "status",
        "floors",
        "footprint_m2",
        "demolished_m2",
        "discovered_at",
        "investigated_at",
        "notice_served_at",
        "scheduled_at",
        "demolished_at",
        "legalised_at",
        "campaign",
        "grid_code",
    ),  # fmt: skip
    assigned=True,
)
