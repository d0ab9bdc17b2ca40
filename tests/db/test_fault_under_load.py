"""The fault run, shortened (issue 7): PostgreSQL stopped as in a crash and started again under the load mix.

10 s of the load run's mix (80 % owner lookups, 10 % reports, 10 % layer reads) at 200 requests/s against a
live API over a cluster of its own; the cluster is stopped with ``pg_ctl stop -m immediate`` after 3 s and
started 3 s later. The reports that got no answer are sent again with their Idempotency-Key afterwards.
"""

from __future__ import annotations

from benchmarks.fault import RECOVERY_LIMIT_S, fault_run

RATE = 200
SECONDS = 10
REPORTS = RATE * SECONDS // 10  # every tenth request is a report


def test_503_while_down_recovery_and_every_acknowledged_report_stored_once() -> None:
    run = fault_run(rate=RATE, seconds=SECONDS, down_at_s=3, down_for_s=3)
    outcomes = run.traffic.outcomes
    assert len(outcomes) == RATE * SECONDS

    # While the database is down: a 503 with Retry-After for every request, never a hang or a 500.
    during = run.during_outage()
    assert during == [503] * len(during)
    assert len(during) >= RATE * 2  # 3 s down at 200/s, with 1 s of margin for a busy machine
    assert [o.retry_after for o in outcomes if o.status == 503] == ["5"] * sum(1 for o in outcomes if o.status == 503)
    assert {o.status for o in outcomes} <= {200, 201, 503}
    assert [o.problem for o in outcomes if o.problem] == []

    # Back within 5 s of the database, without restarting the API.
    assert run.recovery_s() <= RECOVERY_LIMIT_S
    assert all(o.status in (200, 201) for o in outcomes if o.sent_s > run.back_s + RECOVERY_LIMIT_S)

    # Every report acknowledged, once its retry got through, is stored exactly once with its code.
    assert run.traffic.unacknowledged == {}
    assert len(run.traffic.acknowledged) == REPORTS
    assert run.retried.keys() <= {200, 201}
    assert sum(len(codes) for codes in run.stored.values()) == REPORTS
    assert run.duplicates() == 0
    assert run.acknowledged_and_stored_once() == REPORTS
