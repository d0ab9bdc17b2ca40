"""What the case tests share: API keys for each role, made in the session's database and removed after.

Cases reported through the API are committed (the app opens its own transactions), so every key made here is
remembered and ``cleanup`` deletes the keys and every case reported with them (their events go with them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from spatial.keys import create_key

KAIHUA, WOLONG, XINPING = "532601001", "532601002", "532601003"
# Grid 532601001001001 (开化街道 东风社区 第1网格) and its east neighbour …002: their grid members swapped on
# 2017-04-01 (P0395 ↔ P0396).
GRID_1 = (104.2164514, 23.3881702)
GRID_2 = (104.2210488, 23.3882503)
WOLONG_POINT = (104.2545670, 23.3731255)  # grid 532601002003001


@dataclass
class Keys:
    """Secrets of API keys by name, and their database ids."""

    secrets: dict[str, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)

    def header(self, name: str) -> dict[str, str]:
        """Return the X-API-Key header for the key called ``name``."""
        return {"X-API-Key": self.secrets[name]}


STANDARD_KEYS = {
    "dispatcher": ("dispatcher", None, None),
    "squad": ("squad", KAIHUA, None),
    "squad_wolong": ("squad", WOLONG, None),
    "grid_member": ("grid_member", KAIHUA, "P0395"),
    "public": ("public", None, None),
    "public_other": ("public", None, None),
    "planner": ("planner", None, None),
    "admin": ("admin", None, None),
}


@contextmanager
def made_keys(engine: Engine, wanted: dict[str, tuple[str, str | None, str | None]] = STANDARD_KEYS) -> Iterator[Keys]:
    """Create keys (name → role, subdistrict scope, person), yield them, then delete them and their cases."""
    keys = Keys()
    with engine.begin() as conn:
        for name, (role, subdistrict, person) in wanted.items():
            key, secret = create_key(
                conn, name=f"test {name}", role=role, subdistrict_code=subdistrict, person_id=person
            )
            keys.secrets[name] = secret
            assert key.id is not None
            keys.ids.append(key.id)
    try:
        yield keys
    finally:
        cleanup(engine, keys.ids)


def cleanup(engine: Engine, key_ids: list[int]) -> None:
    """Delete the cases reported with these keys, every event the keys recorded, and the keys."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE api_key_id = ANY(:ids)"), {"ids": key_ids})
        conn.execute(text("DELETE FROM incident_events WHERE api_key_id = ANY(:ids)"), {"ids": key_ids})
        conn.execute(text("DELETE FROM api_keys WHERE id = ANY(:ids)"), {"ids": key_ids})


def report(
    lon: float, lat: float, *, item: str = "0508", source: str = "patrol", at: str | None = "2025-03-03T10:00:00+08:00",
    **extra: object,
) -> dict[str, object]:  # fmt: skip
    """Return a POST /v1/incidents body."""
    body: dict[str, object] = {"lon": lon, "lat": lat, "item_code": item, "source": source, "description": "test"}
    if at is not None:
        body["reported_at"] = at
    body.update(extra)
    return body
