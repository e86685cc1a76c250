"""The data subjects' standing requests a catalog restore must not lose: objection and restriction.

An objection puts the number on the suppression list; a restriction marks its recordings
restricted until lifted. Both are journalled in the erasure ledger before they are applied
(``ErasureLedger.record_subject``), so a catalog restored from a backup made before them gets
them back when the ledger is replayed (``lifecycle.erasures.replay_ledger``: the worker's start,
``storage reconcile``):

- an objection: the number's hash is on the suppression list again (its calls refused);
- a restriction or its lift: each number as the last such request left it (``storage.restrictions``):
  its restriction stands again, every recording of it restricted; or it was lifted, and the
  recordings the lift reached are not restricted.

A catalog that already reflects the journal (the usual case) is left as it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from . import restrictions
from .catalog import tables as t
from .ledger import Cursor, ErasureLedger, SubjectEvent
from .suppressions import suppress

_r = t.recordings


@dataclass
class RightsReplay:
    suppressed: int = 0                      # number hashes put back on a suppression list (a number has a few)
    restricted: int = 0                      # recordings whose restriction was re-applied
    lifted: int = 0                          # recordings whose restriction's lift was re-applied
    tenants: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.suppressed or self.restricted or self.lifted)


def reapply(conn: sa.Connection, ledger: ErasureLedger, cursor: Cursor) -> RightsReplay:
    """Bring the catalog back to the journalled requests (see the module), from ``cursor`` on.

    Restrictions are settled per number by the last request of it, in the journal's order (the
    order they committed in: a request journals under its numbers' lock). The numbers are locked
    first, then the journal's tail is read again: a request of them that committed after the first
    reading counts, one after it waits; a replay never undoes what a live request just did."""
    done = RightsReplay()
    timeline: dict[tuple[str, str], list[tuple[datetime, bool]]] = defaultdict(list)
    for event in ledger.subject_events(cursor):
        if event.kind == "object":
            _suppress(conn, event, done)
        else:
            for h in event.number_hashes:
                timeline[(event.tenant, h)].append((event.at, event.kind == "restrict"))
    if not timeline:
        return done
    for tenant, number_hash in sorted(timeline):
        restrictions.lock_numbers(conn, tenant, [number_hash])
    for event in ledger.subject_events(cursor.tail("subject")):
        for h in event.number_hashes:
            if event.kind != "object" and (event.tenant, h) in timeline:
                timeline[(event.tenant, h)].append((event.at, event.kind == "restrict"))
    _restrict(conn, timeline, done)
    return done


def _suppress(conn: sa.Connection, event: SubjectEvent, done: RightsReplay) -> None:
    added = sum(suppress(conn, tenant=event.tenant, number_hash=h, actor=event.actor, now=event.at)
                for h in event.number_hashes)
    done.suppressed += added
    if added:
        done.tenants.add(event.tenant)


def _restrict(conn: sa.Connection, timeline: dict[tuple[str, str], list[tuple[datetime, bool]]],
              done: RightsReplay) -> None:
    """Each journalled number as its last request left it: its restriction stands (its row, and
    every recording of it restricted by it), or a lift ended it (the row gone, and every recording
    its restriction restricted, wherever rectification has moved it since, no longer restricted).
    Decided by the journal's order alone, no clock: the same rules as ``access.subjects.restrict``,
    so a catalog that reflects the journal is left as it is."""
    r = _r.c
    for (tenant, number_hash), requests in sorted(timeline.items()):
        at, on = requests[-1]  # the journal's order: requests of a number are journalled as they commit
        if on:
            restrictions.stand(conn, tenant=tenant, since={number_hash: at}, actor="ledger-replay")
            changed = conn.execute(_r.update().where(
                r.tenant_id == tenant, r.number_hash == number_hash,
                sa.or_(r.restricted.is_(False), r.restricted_by.is_(None), r.restricted_by != number_hash))
                .values(restricted=True, restricted_by=number_hash,
                        restricted_at=sa.case((r.restricted, r.restricted_at), else_=at))).rowcount
            done.restricted += changed
        else:
            restrictions.lift(conn, tenant=tenant, number_hashes=[number_hash])
            changed = conn.execute(_r.update().where(r.tenant_id == tenant, r.restricted_by == number_hash)
                                   .values(restricted=False, restricted_at=None, restricted_by=None)).rowcount
            done.lifted += changed
        if changed:
            done.tenants.add(tenant)
