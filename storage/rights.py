"""The data subjects' standing requests a catalog restore must not lose: objection and restriction.

An objection puts the number on the suppression list; a restriction marks its recordings
restricted until lifted. Both are journalled in the erasure ledger before they are applied
(``ErasureLedger.record_subject``), so a catalog restored from a backup made before them gets
them back when the ledger is replayed (``lifecycle.erasures.replay_ledger``: the worker's start,
``storage reconcile``):

- an objection: the number's hash is on the suppression list again (its calls refused);
- a restriction or its lift: each recording of its numbers that existed when it was made
  (``created_at`` up to its time) is restricted or not as the last such request left it.

A catalog that already reflects the journal (the usual case) is left as it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

import sqlalchemy as sa

from .catalog import tables as t
from .erasure import chunks
from .ledger import SubjectEvent
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


def reapply(conn: sa.Connection, events: Iterable[SubjectEvent]) -> RightsReplay:
    """Bring the catalog back to the journalled requests (see the module). Restrictions are
    settled per recording, by the last request that reached it, so a restriction lifted since
    changes nothing: no state is flipped back and forth on every replay."""
    done = RightsReplay()
    timeline: dict[tuple[str, str], list[tuple[datetime, bool]]] = defaultdict(list)
    for event in events:
        if event.kind == "object":
            _suppress(conn, event, done)
        else:
            for h in event.number_hashes:
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
    """Each recording of a journalled number as the last restriction or lift that reached it left it."""
    hashes_of: dict[str, list[str]] = defaultdict(list)
    for tenant, number_hash in timeline:
        hashes_of[tenant].append(number_hash)
    for tenant, hashes in hashes_of.items():
        for part in chunks(hashes):
            rows = conn.execute(sa.select(_r.c.id, _r.c.number_hash, _r.c.created_at, _r.c.restricted).where(
                _r.c.tenant_id == tenant, _r.c.number_hash.in_(part))).all()
            for row in rows:
                reached = [(at, on) for at, on in timeline[(tenant, row.number_hash)] if at >= row.created_at]
                if not reached or reached[-1][1] == row.restricted:
                    continue
                at, on = reached[-1]
                conn.execute(_r.update().where(_r.c.id == row.id).values(restricted=on,
                                                                          restricted_at=at if on else None))
                done.tenants.add(tenant)
                if on:
                    done.restricted += 1
                else:
                    done.lifted += 1
