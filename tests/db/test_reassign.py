"""A new boundary generation: open cases are re-assigned in one statement, closed ones keep their generation."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.settings import OwnerSettings
from spatial.workflow import reassign_generation

X, Y = "532601001001001", "532601001001002"  # neighbours in 东风社区; generation 2 swaps their shapes


def redraw(conn: Connection) -> None:
    """Add generation 2 from 2017-06-01: every boundary as in generation 1 except grids X and Y, swapped."""
    conn.execute(text("UPDATE boundary_generations SET valid_to = '2017-06-01T00:00:00+08:00' WHERE generation = 1"))
    conn.execute(
        text(
            "INSERT INTO boundary_generations (generation, label, valid_from) "
            "VALUES (2, 'test: grids 001 and 002 of 东风社区 swapped', '2017-06-01T00:00:00+08:00')"
        )
    )
    conn.execute(text("INSERT INTO subdistricts SELECT 2, code, name, name_en, geom FROM subdistricts"))
    conn.execute(text("INSERT INTO communities SELECT 2, code, subdistrict_code, name, geom FROM communities"))
    conn.execute(
        text(
            "INSERT INTO grids (generation, code, community_code, name, geom) "
            "SELECT 2, g.code, g.community_code, g.name, CASE g.code WHEN :x THEN y.geom WHEN :y THEN x.geom "
            "ELSE g.geom END FROM grids g, grids x, grids y "
            "WHERE g.generation = 1 AND x.generation = 1 AND x.code = :x AND y.generation = 1 AND y.code = :y"
        ),
        {"x": X, "y": Y},
    )


def test_open_cases_move_to_the_new_generation_and_closed_ones_stay(conn: Connection) -> None:
    before = dict(
        conn.execute(
            text(
                "SELECT grid_code, count(*) FROM incidents WHERE status NOT IN ('closed', 'rejected')"
                " AND grid_code IN (:x, :y) GROUP BY 1"
            ),
            {"x": X, "y": Y},
        ).all()
    )
    assert before == {X: 3, Y: 6}
    redraw(conn)
    result = reassign_generation(conn, generation=2, rules=OwnerSettings())
    assert (result.open_cases, result.updated, result.moved, result.uncovered) == (985, 985, 9, 0)
    after = conn.execute(
        text(
            "SELECT generation, grid_code, grid_member_id, count(*) FROM incidents"
            " WHERE status NOT IN ('closed', 'rejected') AND grid_code IN (:x, :y) GROUP BY 1, 2, 3 ORDER BY 2"
        ),
        {"x": X, "y": Y},
    ).all()
    # what lay in X now lies in Y (and the reverse); grid members as of 2017-06-01 (after the rotation)
    assert [tuple(r) for r in after] == [(2, X, "P0396", 6), (2, Y, "P0395", 3)]
    assert (
        conn.execute(
            text("SELECT count(*) FROM incidents WHERE status IN ('closed', 'rejected') AND generation = 1")
        ).scalar_one()
        == 3761
    )
    assert (
        conn.execute(
            text("SELECT count(*) FROM incidents WHERE status NOT IN ('closed', 'rejected') AND generation = 2")
        ).scalar_one()
        == 985
    )
    notes = (
        conn.execute(text("SELECT note FROM incident_events WHERE action = 'reassign' ORDER BY note")).scalars().all()
    )
    assert len(notes) == 9
    assert notes[0] == f"boundary generation 2: re-assigned from grid {X} to {Y}"

    again = reassign_generation(conn, generation=2, rules=OwnerSettings())
    assert (again.open_cases, again.moved) == (985, 0)


def test_an_unknown_generation_is_refused(conn: Connection) -> None:
    try:
        reassign_generation(conn, generation=9, rules=OwnerSettings())
    except Exception as exc:  # NotFound
        assert "no boundary generation 9" in str(exc)
    else:
        raise AssertionError("generation 9 does not exist")
