"""The people behind the chain: squads (执法中队), people with their roles, and their duty periods.

Duties say who answers for which grid, street, river, subdistrict or squad from when to when, so that
every answer can be given as of a moment (rotation, 交流轮岗).
"""

from sqlalchemy import BigInteger, Column, DateTime, Integer, Table, Text

from spatial.layers.base import Field, Layer, metadata

squads_table = Table(
    "squads",
    metadata,
    Column("code", Text, primary_key=True),
    Column("subdistrict_code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("name_en", Text),
    Column("headcount", Integer, nullable=False),
    Column("assistants", Integer, nullable=False),
)

people_table = Table(
    "people",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("phone", Text, nullable=False),
    Column("squad_code", Text),
    Column("title", Text),
)

duties_table = Table(
    "duties",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("person_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("target_kind", Text, nullable=False),
    Column("target_code", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
)

squads = Layer(
    name="squads",
    table=squads_table,
    label_zh="执法中队",
    label_en="Enforcement squads",
    fields=(
        Field("code", "text"),
        Field("subdistrict_code", "text"),
        Field("name", "text"),
        Field("name_en", "text", required=False),
        Field("headcount", "integer"),
        Field("assistants", "integer"),
    ),
    key=("code",),
    geometry_types=None,
    published=("code", "subdistrict_code", "name", "name_en", "headcount", "assistants"),
)

people = Layer(
    name="people",
    table=people_table,
    label_zh="人员",
    label_en="People",
    fields=(
        Field("id", "text"),
        Field("name", "text"),
        Field("role", "text"),
        Field("phone", "text"),
        Field("squad_code", "text", required=False),
        Field("title", "text", required=False),
    ),
    key=("id",),
    geometry_types=None,
    published=("id", "name", "role", "title", "squad_code"),
    id_column="id",
)

duties = Layer(
    name="duties",
    table=duties_table,
    label_zh="职责",
    label_en="Duties",
    fields=(
        Field("person_id", "text"),
        Field("role", "text"),
        Field("target_kind", "text"),
        Field("target_code", "text"),
        Field("valid_from", "timestamptz"),
        Field("valid_to", "timestamptz", required=False),
    ),
    key=("person_id", "role", "target_kind", "target_code", "valid_from"),
    geometry_types=None,
    published=("id", "person_id", "role", "target_kind", "target_code", "valid_from", "valid_to"),
    id_column="id",
)
