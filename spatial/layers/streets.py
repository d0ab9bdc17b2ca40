"""Streets: a street chief (街长) answers for each street that signed a responsibility letter."""

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, Text, text
from sqlalchemy.engine import Connection

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


def chiefs(conn: Connection, at: datetime) -> list[dict[str, Any]]:
    """Return each street with a street chief (街长) at ``at``: street code and name, the chief's id and name.

    Street chiefs are public (their names stand on the street's sign); phone numbers are not listed here.
    """
    rows = conn.execute(
        text(
            "SELECT s.code, s.name, p.id AS chief_id, p.name AS chief_name FROM streets s"
            " JOIN duties d ON d.target_kind = 'street' AND d.target_code = s.code AND d.role = 'street_chief'"
            "  AND d.valid_from <= :at AND (d.valid_to IS NULL OR d.valid_to > :at)"
            " JOIN people p ON p.id = d.person_id ORDER BY s.code"
        ),
        {"at": at},
    ).mappings()
    return [dict(r) for r in rows]
