"""Foundation: boundaries with generations, streets and rivers, people and duties, the catalogue,
illegal buildings, markets, stalls, operations, incidents, and the responsibility-chain function.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every geometry is stored in EPSG:4326; layers that are measured or searched by distance also keep a
# generated EPSG:4544 copy (CGCS2000 / 3-degree Gauss-Kruger CM 105 E), so metre distances use a GiST index.
UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Boundaries change (a community is split, a grid redrawn). Each edit is a new generation covering a
-- time range; incidents keep the generation they were assigned under (re-assignment is explicit).
CREATE TABLE boundary_generations (
    generation  integer PRIMARY KEY,
    label       text NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    source      text,
    problems    jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    EXCLUDE USING gist (tstzrange(valid_from, valid_to) WITH &&)
);

CREATE TABLE subdistricts (
    generation  integer NOT NULL REFERENCES boundary_generations ON DELETE CASCADE,
    code        text NOT NULL CHECK (code ~ '^[0-9]{9}$'),
    name        text NOT NULL,
    name_en     text,
    geom        geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    PRIMARY KEY (generation, code)
);
CREATE INDEX subdistricts_geom_idx ON subdistricts USING gist (geom);

CREATE TABLE communities (
    generation       integer NOT NULL,
    code             text NOT NULL CHECK (code ~ '^[0-9]{12}$'),
    subdistrict_code text NOT NULL,
    name             text NOT NULL,
    geom             geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    PRIMARY KEY (generation, code),
    FOREIGN KEY (generation, subdistrict_code) REFERENCES subdistricts (generation, code) ON DELETE CASCADE,
    CHECK (left(code, 9) = subdistrict_code)
);
CREATE INDEX communities_geom_idx ON communities USING gist (geom);

-- Unit grids (CJ/T 213, GB/T 30428.1): 15 digits = county 6 + subdistrict 3 + community 3 + grid 3.
CREATE TABLE grids (
    generation      integer NOT NULL,
    code            text NOT NULL CHECK (code ~ '^[0-9]{15}$'),
    community_code  text NOT NULL,
    name            text NOT NULL,
    geom            geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    geom_m          geometry(MultiPolygon, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED,
    PRIMARY KEY (generation, code),
    FOREIGN KEY (generation, community_code) REFERENCES communities (generation, code) ON DELETE CASCADE,
    CHECK (left(code, 12) = community_code)
);
CREATE INDEX grids_geom_idx ON grids USING gist (geom);
CREATE INDEX grids_geom_m_idx ON grids USING gist (geom_m);

-- Point lookups run on small pieces of the grids (ST_Subdivide), kept in step by a trigger so that
-- any writer (loader, importer, psql) leaves them consistent.
CREATE TABLE grid_parts (
    generation  integer NOT NULL,
    grid_code   text NOT NULL,
    geom        geometry(Polygon, 4326) NOT NULL,
    geom_m      geometry(Polygon, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED,
    FOREIGN KEY (generation, grid_code) REFERENCES grids (generation, code) ON DELETE CASCADE
);
CREATE INDEX grid_parts_geom_idx ON grid_parts USING gist (geom);
CREATE INDEX grid_parts_geom_m_idx ON grid_parts USING gist (geom_m);
CREATE INDEX grid_parts_grid_idx ON grid_parts (generation, grid_code);

CREATE FUNCTION citygrid_refresh_grid_parts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM grid_parts WHERE generation = OLD.generation AND grid_code = OLD.code;
    END IF;
    INSERT INTO grid_parts (generation, grid_code, geom)
    SELECT NEW.generation, NEW.code, ST_Subdivide(NEW.geom, 32);
    RETURN NULL;
END $$;
CREATE TRIGGER grids_refresh_parts AFTER INSERT OR UPDATE OF geom, code, generation ON grids
    FOR EACH ROW EXECUTE FUNCTION citygrid_refresh_grid_parts();

CREATE TABLE streets (
    code              text PRIMARY KEY,
    name              text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('trunk', 'secondary', 'branch')),
    geom              geometry(LineString, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    geom_m            geometry(LineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX streets_geom_idx ON streets USING gist (geom);
CREATE INDEX streets_geom_m_idx ON streets USING gist (geom_m);

CREATE TABLE rivers (
    code    text PRIMARY KEY,
    name    text NOT NULL,
    geom    geometry(MultiLineString, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    geom_m  geometry(MultiLineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX rivers_geom_idx ON rivers USING gist (geom);
CREATE INDEX rivers_geom_m_idx ON rivers USING gist (geom_m);

-- One enforcement squad (执法中队) per subdistrict.
CREATE TABLE squads (
    code              text PRIMARY KEY,
    subdistrict_code  text NOT NULL UNIQUE CHECK (subdistrict_code ~ '^[0-9]{9}$'),
    name              text NOT NULL,
    name_en           text,
    headcount         integer NOT NULL CHECK (headcount >= 0),
    assistants        integer NOT NULL CHECK (assistants >= 0),
    CHECK (assistants <= headcount)
);

CREATE TABLE people (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('grid_member', 'community_cadre', 'street_chief', 'river_chief',
                    'squad_leader', 'squad_officer', 'squad_assistant', 'subdistrict_chief',
                    'general_street_chief')),
    phone       text NOT NULL,
    squad_code  text REFERENCES squads,
    title       text
);
CREATE INDEX people_role_idx ON people (role);
CREATE INDEX people_squad_idx ON people (squad_code);

-- Responsibility changes over time (rotation, 交流轮岗): every answer can be given as of a moment.
-- Single-holder duties may not overlap for the same target; community cadres share a community.
CREATE TABLE duties (
    id           bigserial PRIMARY KEY,
    person_id    text NOT NULL REFERENCES people ON DELETE CASCADE,
    role         text NOT NULL,
    target_kind  text NOT NULL CHECK (target_kind IN ('grid', 'community', 'subdistrict', 'street', 'river',
                     'squad', 'city')),
    target_code  text NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    UNIQUE (person_id, role, target_kind, target_code, valid_from),
    EXCLUDE USING gist (role WITH =, target_kind WITH =, target_code WITH =,
                        tstzrange(valid_from, valid_to) WITH &&) WHERE (role <> 'community_cadre')
);
CREATE INDEX duties_target_idx ON duties (target_kind, target_code, role, valid_from);
CREATE INDEX duties_person_idx ON duties (person_id);

-- 10 categories / 147 items (10大类147项); codes follow the national event classes where they exist.
CREATE TABLE catalogue_categories (
    code     text PRIMARY KEY CHECK (code ~ '^[0-9]{2}$'),
    name_zh  text NOT NULL UNIQUE,
    name_en  text NOT NULL,
    pk_theme text CHECK (pk_theme IN ('demolition', 'outdoor_advertising', 'sanitation', 'business_premises'))
);
CREATE TABLE catalogue_items (
    code              text PRIMARY KEY CHECK (code ~ '^[0-9]{4}$'),
    category_code     text NOT NULL REFERENCES catalogue_categories,
    name_zh           text NOT NULL UNIQUE,
    name_en           text NOT NULL,
    time_limit        integer NOT NULL CHECK (time_limit > 0),
    time_unit         text NOT NULL CHECK (time_unit IN ('working_hours', 'working_days')),
    responsible_role  text NOT NULL,
    national          boolean NOT NULL,
    CHECK (left(code, 2) = category_code)
);

CREATE TABLE illegal_buildings (
    code              text PRIMARY KEY,
    address           text NOT NULL,
    campaign          text,
    floors            smallint NOT NULL CHECK (floors BETWEEN 1 AND 60),
    status            text NOT NULL CHECK (status IN ('discovered', 'investigated', 'notice_served',
                          'scheduled', 'demolished', 'legalised')),
    discovered_at     date NOT NULL,
    investigated_at   date,
    notice_served_at  date,
    scheduled_at      date,
    demolished_at     date,
    legalised_at      date,
    geom              geometry(Polygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    footprint_m2      double precision GENERATED ALWAYS AS (ST_Area(ST_Transform(geom, 4544))) STORED,
    demolished_m2     double precision CHECK (demolished_m2 >= 0),
    generation        integer,
    grid_code         text,
    CHECK ((status = 'demolished') = (demolished_at IS NOT NULL)),
    CHECK (status <> 'demolished' OR demolished_m2 IS NOT NULL)
);
CREATE INDEX illegal_buildings_geom_idx ON illegal_buildings USING gist (geom);

-- A demolished building with no recorded demolished area counts its whole footprint, measured here.
CREATE FUNCTION citygrid_default_demolished_m2() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'demolished' AND NEW.demolished_m2 IS NULL THEN
        NEW.demolished_m2 := ST_Area(ST_Transform(NEW.geom, 4544));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER illegal_buildings_default_demolished_m2 BEFORE INSERT OR UPDATE ON illegal_buildings
    FOR EACH ROW EXECUTE FUNCTION citygrid_default_demolished_m2();
CREATE INDEX illegal_buildings_status_idx ON illegal_buildings (status);
CREATE INDEX illegal_buildings_grid_idx ON illegal_buildings (grid_code);

CREATE TABLE markets (
    code          text PRIMARY KEY,
    name          text NOT NULL,
    kind          text NOT NULL,
    rectified_at  date,
    geom          geometry(Polygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
    generation    integer,
    grid_code     text
);
CREATE INDEX markets_geom_idx ON markets USING gist (geom);

CREATE TABLE stalls (
    code         text PRIMARY KEY,
    kind         text NOT NULL,
    licensed     boolean NOT NULL,
    market_code  text REFERENCES markets,
    geom         geometry(Point, 4326) NOT NULL,
    generation   integer,
    grid_code    text
);
CREATE INDEX stalls_geom_idx ON stalls USING gist (geom);

-- Joint enforcement operations (联合执法行动), located at their main site.
CREATE TABLE operations (
    code              text PRIMARY KEY,
    title             text NOT NULL,
    theme             text NOT NULL,
    held_on           date NOT NULL,
    subdistrict_code  text NOT NULL,
    participants      integer NOT NULL CHECK (participants > 0),
    geom              geometry(Point, 4326) NOT NULL
);
CREATE INDEX operations_geom_idx ON operations USING gist (geom);

-- Incidents carry their whole responsibility chain, written by the statement that inserts them.
CREATE TABLE incidents (
    id                  bigserial PRIMARY KEY,
    code                text NOT NULL UNIQUE,
    source              text NOT NULL CHECK (source IN ('hotline', 'letter', 'patrol', 'grid_member', 'media',
                            'open311')),
    item_code           text NOT NULL REFERENCES catalogue_items,
    status              text NOT NULL CHECK (status IN ('collected', 'registered', 'dispatched', 'handling',
                            'feedback', 'verified', 'closed', 'rejected')),
    description         text NOT NULL DEFAULT '',
    reported_at         timestamptz NOT NULL,
    due_at              timestamptz,
    closed_at           timestamptz,
    deferred            boolean NOT NULL DEFAULT false,
    satisfaction        text CHECK (satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied')),
    geom                geometry(Point, 4326) NOT NULL,
    generation          integer,
    grid_code           text,
    community_code      text,
    subdistrict_code    text,
    squad_code          text,
    grid_member_id      text REFERENCES people,
    street_code         text,
    street_chief_id     text REFERENCES people,
    river_code          text,
    river_chief_id      text REFERENCES people,
    outside             boolean NOT NULL DEFAULT false,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (satisfaction IS NULL OR status = 'closed')
);
CREATE INDEX incidents_geom_idx ON incidents USING gist (geom);
CREATE INDEX incidents_reported_idx ON incidents (reported_at);
CREATE INDEX incidents_status_idx ON incidents (status);
CREATE INDEX incidents_item_idx ON incidents (item_code);
CREATE INDEX incidents_grid_idx ON incidents (grid_code);
CREATE INDEX incidents_subdistrict_idx ON incidents (subdistrict_code, reported_at);

CREATE TABLE incident_events (
    id           bigserial PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    from_status  text,
    to_status    text NOT NULL,
    actor        text NOT NULL,
    at           timestamptz NOT NULL,
    note         text NOT NULL DEFAULT ''
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, at);

CREATE FUNCTION citygrid_generation_at(at timestamptz) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT generation FROM boundary_generations
    WHERE valid_from <= at AND (valid_to IS NULL OR valid_to > at)
$$;

CREATE FUNCTION citygrid_duty_holder(p_role text, p_kind text, p_target text, at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT person_id FROM duties
    WHERE role = p_role AND target_kind = p_kind AND target_code = p_target
      AND valid_from <= at AND (valid_to IS NULL OR valid_to > at)
    ORDER BY valid_from DESC
    LIMIT 1
$$;

-- The responsibility chain of points, each as of its own moment: the one code path used by the owner
-- lookup (one point), the batch lookup (a million) and incident intake, so they can never disagree.
-- Set-based: points are located by index (grid pieces, nearest street, nearest river), then joined to
-- grids, communities, squads and the duty periods in force at each point's moment.
-- Grid rule: every grid within edge_tol_m of the point is a candidate and the lowest code owns it
-- (documented, deterministic); with no candidate, the nearest grid within outside_tol_m owns it, flagged
-- outside; beyond that grid_code is NULL (not covered) and the nearest grid is still reported.
-- Street chief: the chief of the nearest street within street_m, else the subdistrict chief (街道办主任 is
-- 街长 of the subdistrict). The exclusion constraint on duties guarantees at most one holder per role and
-- target at any moment, so no join below can multiply a point.
CREATE TYPE citygrid_chain AS (
    row_no bigint, generation integer, grid_code text, community_code text, subdistrict_code text,
    squad_code text, grid_member_id text, street_code text, street_distance_m double precision,
    street_chief_id text, street_chief_basis text, subdistrict_chief_id text, general_street_chief_id text,
    squad_leader_id text,
    river_code text, river_distance_m double precision, river_chief_id text,
    candidates text[], outside boolean, nearest_grid_code text, distance_to_grid_m double precision,
    distance_to_boundary_m double precision);

CREATE FUNCTION citygrid_owner_points(
    geoms geometry[], ats timestamptz[],
    edge_tol_m double precision DEFAULT 0.5, outside_tol_m double precision DEFAULT 200,
    street_m double precision DEFAULT 50, river_m double precision DEFAULT 100)
RETURNS SETOF citygrid_chain
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH pts AS MATERIALIZED (
        SELECT u.row_no, u.at, bg.generation, ST_Transform(u.geom, 4544) AS p_m
        FROM unnest(geoms, ats) WITH ORDINALITY AS u (geom, at, row_no)
        -- a join, not citygrid_generation_at(): a nested function call per point costs more than the lookup
        LEFT JOIN boundary_generations bg ON bg.valid_from <= u.at AND (bg.valid_to IS NULL OR bg.valid_to > u.at)
    ), located AS MATERIALIZED (
        SELECT pts.*, o.grid_code, o.candidates, o.outside, o.nearest_code, o.distance_m,
               st.code AS street_code, st.distance_m AS street_distance_m,
               rv.code AS river_code, rv.distance_m AS river_distance_m
        FROM pts
        LEFT JOIN LATERAL (
            SELECT cand.codes[1] AS grid_code, cand.codes AS candidates, false AS outside,
                   cand.codes[1] AS nearest_code, 0::double precision AS distance_m
            FROM (SELECT array_agg(DISTINCT gp.grid_code ORDER BY gp.grid_code) AS codes
                  FROM grid_parts gp
                  WHERE gp.generation = pts.generation AND ST_DWithin(gp.geom_m, pts.p_m, edge_tol_m)) cand
            WHERE cand.codes IS NOT NULL
            UNION ALL
            SELECT * FROM (
                SELECT CASE WHEN ST_Distance(gp.geom_m, pts.p_m) <= outside_tol_m THEN gp.grid_code END,
                       CASE WHEN ST_Distance(gp.geom_m, pts.p_m) <= outside_tol_m THEN ARRAY[gp.grid_code]
                            ELSE ARRAY[]::text[] END,
                       true, gp.grid_code, ST_Distance(gp.geom_m, pts.p_m)
                FROM grid_parts gp
                WHERE gp.generation = pts.generation
                ORDER BY gp.geom_m <-> pts.p_m
                LIMIT 1) nearest
            LIMIT 1
        ) o ON true
        LEFT JOIN LATERAL (
            SELECT s.code, ST_Distance(s.geom_m, pts.p_m) AS distance_m FROM streets s
            WHERE ST_DWithin(s.geom_m, pts.p_m, street_m)
            ORDER BY s.geom_m <-> pts.p_m LIMIT 1
        ) st ON true
        LEFT JOIN LATERAL (
            SELECT r.code, ST_Distance(r.geom_m, pts.p_m) AS distance_m FROM rivers r
            WHERE ST_DWithin(r.geom_m, pts.p_m, river_m)
            ORDER BY r.geom_m <-> pts.p_m LIMIT 1
        ) rv ON true
    )
    SELECT l.row_no, l.generation, l.grid_code, g.community_code, c.subdistrict_code, sq.code,
           gm.person_id, l.street_code, l.street_distance_m, COALESCE(stc.person_id, sdc.person_id),
           CASE WHEN stc.person_id IS NOT NULL THEN 'street' WHEN sdc.person_id IS NOT NULL THEN 'subdistrict' END,
           sdc.person_id, gsc.person_id, sql.person_id,
           l.river_code, l.river_distance_m, rvc.person_id,
           l.candidates, l.outside, l.nearest_code, l.distance_m,
           CASE WHEN l.grid_code IS NOT NULL AND NOT l.outside THEN ST_Distance(ST_Boundary(g.geom_m), l.p_m) END
    FROM located l
    LEFT JOIN grids g ON g.generation = l.generation AND g.code = l.grid_code
    LEFT JOIN communities c ON c.generation = l.generation AND c.code = g.community_code
    LEFT JOIN squads sq ON sq.subdistrict_code = c.subdistrict_code
    LEFT JOIN duties gm ON gm.target_kind = 'grid' AND gm.target_code = l.grid_code AND gm.role = 'grid_member'
        AND gm.valid_from <= l.at AND (gm.valid_to IS NULL OR gm.valid_to > l.at)
    LEFT JOIN duties stc ON stc.target_kind = 'street' AND stc.target_code = l.street_code
        AND stc.role = 'street_chief' AND stc.valid_from <= l.at AND (stc.valid_to IS NULL OR stc.valid_to > l.at)
    LEFT JOIN duties sdc ON sdc.target_kind = 'subdistrict' AND sdc.target_code = c.subdistrict_code
        AND sdc.role = 'subdistrict_chief' AND sdc.valid_from <= l.at
        AND (sdc.valid_to IS NULL OR sdc.valid_to > l.at)
    LEFT JOIN duties gsc ON gsc.target_kind = 'city' AND gsc.target_code = left(c.subdistrict_code, 6)
        AND gsc.role = 'general_street_chief' AND gsc.valid_from <= l.at
        AND (gsc.valid_to IS NULL OR gsc.valid_to > l.at)
    LEFT JOIN duties sql ON sql.target_kind = 'squad' AND sql.target_code = sq.code AND sql.role = 'squad_leader'
        AND sql.valid_from <= l.at AND (sql.valid_to IS NULL OR sql.valid_to > l.at)
    LEFT JOIN duties rvc ON rvc.target_kind = 'river' AND rvc.target_code = l.river_code
        AND rvc.role = 'river_chief' AND rvc.valid_from <= l.at AND (rvc.valid_to IS NULL OR rvc.valid_to > l.at)
$$;

-- One point: a thin wrapper for psql users and single lookups.
CREATE FUNCTION citygrid_owner(
    p geometry, at timestamptz DEFAULT now(),
    edge_tol_m double precision DEFAULT 0.5, outside_tol_m double precision DEFAULT 200,
    street_m double precision DEFAULT 50, river_m double precision DEFAULT 100)
RETURNS SETOF citygrid_chain LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT * FROM citygrid_owner_points(ARRAY[p], ARRAY[at], edge_tol_m, outside_tol_m, street_m, river_m)
$$;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS citygrid_owner(geometry, timestamptz, double precision, double precision,
                                       double precision, double precision);
DROP FUNCTION IF EXISTS citygrid_owner_points(geometry[], timestamptz[], double precision, double precision,
                                              double precision, double precision);
DROP TYPE IF EXISTS citygrid_chain;
DROP FUNCTION IF EXISTS citygrid_duty_holder(text, text, text, timestamptz);
DROP FUNCTION IF EXISTS citygrid_generation_at(timestamptz);
DROP TABLE IF EXISTS incident_events, incidents, operations, stalls, markets, illegal_buildings,
    catalogue_items, catalogue_categories, duties, people, squads, rivers, streets, grid_parts, grids,
    communities, subdistricts, boundary_generations;
DROP FUNCTION IF EXISTS citygrid_refresh_grid_parts();
DROP FUNCTION IF EXISTS citygrid_default_demolished_m2();
DROP EXTENSION IF EXISTS btree_gist;
DROP EXTENSION IF EXISTS postgis;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
