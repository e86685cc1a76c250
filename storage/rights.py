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
from typing import Iterable

import sqlalchemy as sa

from . import restrictions
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
    """Each journalled number as its last request left it: a restriction stands (the number's row,
    and every recording of it restricted), or a lift ended it (the row gone, and the recordings it
    reached no longer restricted: those restricted before the lift; one restricted since, rectified
    onto the number while restricted by its old one, stays so; at a tie, restricted: the safe side)."""
    last = {key: requests[-1] for key, requests in timeline.items()}  # the journal's order: its writers' clock
    hashes_of: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for (tenant, number_hash), (_at, on) in last.items():
        hashes_of[(tenant, on)].append(number_hash)
    for (tenant, on), hashes in hashes_of.items():
        for part in chunks(hashes):
            if on:
                restrictions.stand(conn, tenant=tenant, since={h: last[(tenant, h)][0] for h in part},
                                   actor="ledger-replay")
            else:
                restrictions.lift(conn, tenant=tenant, number_hashes=part)
            rows = conn.execute(sa.select(_r.c.id, _r.c.number_hash, _r.c.restricted, _r.c.restricted_at).where(
                _r.c.tenant_id == tenant, _r.c.number_hash.in_(part), _r.c.restricted != on)).all()
            for row in rows:
                at = last[(tenant, row.number_hash)][0]
                if not on and (row.restricted_at is None or row.restricted_at >= at):
                    continue  # restricted since the lift (rectified onto the number) or at once: not the lift's
                conn.execute(_r.update().where(_r.c.id == row.id).values(restricted=on,
                                                                          restricted_at=at if on else None))
                done.tenants.add(tenant)
                if on:
                    done.restricted += 1
                else:
                    done.lifted += 1
