"""Who may do and see what: the roles, what each reads and writes, and the fields kept from the others.

The rules in one place (the API and the command line both ask here):

- **public** — a citizen's app or an Open311 client, or no key at all: report an incident, ask who owns a
  point, read the public layers and Open311's service requests; read and evaluate only the cases it reported.
- **grid_member**, **squad** — scoped to one subdistrict (their key says which): read and move their own
  subdistrict's cases through the loop; a case elsewhere is a 403.
- **dispatcher** — the hotline and command centre (指挥中心): every case, registration, dispatch, closure.
- **planner** — reads everything: every case, the scores (考核), the exports.
- **admin** — boundaries, people, duties, keys, and the audit log.

Phone numbers are shown only to staff (every role but public); a case's reporter (name and phone of the
citizen) only to the roles that call reporters back: grid_member, squad, dispatcher and admin.
"""

from __future__ import annotations

from typing import Any

from spatial.keys import ApiKey

ANONYMOUS = ApiKey(id=None, name="anonymous", role="public")

STAFF_ROLES = ("grid_member", "squad", "dispatcher", "planner", "admin")
CASE_READERS = ("public", "grid_member", "squad", "dispatcher", "planner")  # public: its own cases only
SCORE_READERS = ("planner", "dispatcher")
EXPORTERS = ("planner",)
REPORTER_READERS = ("grid_member", "squad", "dispatcher", "admin")
AUDIT_READERS = ("admin",)


def sees_phones(key: ApiKey) -> bool:
    """Return True when ``key`` may see officers' phone numbers."""
    return key.role in STAFF_ROLES


def sees_reporter(key: ApiKey) -> bool:
    """Return True when ``key`` may see who reported a case (a public key sees its own reports' reporter)."""
    return key.role in REPORTER_READERS


def without_phones(value: Any) -> Any:
    """Return ``value`` (JSON-like) with every ``phone`` and ``*_phone`` member removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_phones(v) for k, v in value.items() if not (k == "phone" or k.endswith("_phone"))}
    if isinstance(value, list):
        return [without_phones(v) for v in value]
    return value


def for_caller(key: ApiKey, value: Any) -> Any:
    """Return ``value`` as ``key`` may see it: without phone numbers unless it is staff."""
    return value if sees_phones(key) else without_phones(value)


def case_for_caller(key: ApiKey, case: dict[str, Any]) -> dict[str, Any]:
    """Return a case as ``key`` may see it: reporter details and phone numbers only where the role needs them."""
    shown = dict(case)
    reporter = shown.pop("reporter", None)
    shown = for_caller(key, shown)
    # A public key reaches only the cases it reported (spatial.workflow.check_reach): their reporter is its own.
    if reporter is not None and (sees_reporter(key) or key.role == "public"):
        shown["reporter"] = reporter
    return shown


def scope_of(key: ApiKey, asked: str | None) -> str | None:
    """Return the subdistrict a list must be limited to for ``key``, given the one asked for (or None).

    A scoped key gets its own subdistrict whatever was asked, and a 403 when it asked for another.
    """
    if key.subdistrict_code is None:
        return asked
    if asked is not None:
        key.require_scope(asked, what="the list asked for (leave subdistrict_code out for your own)")
    return key.subdistrict_code
