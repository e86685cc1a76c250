"""What the console offers a user: the policy's own decisions, asked ahead of time.

Pure (no I/O, no clock): the caller passes the user, the targets and ``now``. The console
hides what these say no to; the API decides again, and audits, when an action is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.vocabulary import COPY_ACTIONS, Action, Role

from ..policy import BreakGlass, Target, User, decide


@dataclass(frozen=True)
class Pages:
    search: bool
    audit: bool
    subjects: bool
    report: bool
    break_glass: bool
    dlq: bool = False


def pages(user: User, now: datetime, *, may_read_report: bool) -> Pages:
    def may(action: Action) -> bool:
        return decide(user, action, None, now=now).allowed

    return Pages(search=may(Action.SEARCH), audit=may(Action.AUDIT_READ), subjects=may(Action.SUBJECT_REQUEST),
                 report=may_read_report, break_glass=may(Action.BREAK_GLASS), dlq=may(Action.DLQ_READ))


@dataclass(frozen=True)
class CopyView:
    """One visible copy: its id, its policy target and whether it is held."""

    id: str
    target: Target
    held: bool


@dataclass(frozen=True)
class CopyActions:
    copy_id: str
    play: bool
    download: bool
    hold: bool
    release: bool


@dataclass(frozen=True)
class RecordingActions:
    copies: list[CopyActions]
    create: list[str] = field(default_factory=list)
    hold_all: bool = False
    release_all: bool = False
    break_glass: bool = False


def recording_actions(user: User, copies: list[CopyView], source: Target | None, *, now: datetime,
                      grant: BreakGlass | None = None) -> RecordingActions:
    """``source``: the copy new copies are made from (as ``POST /recordings/{id}/copies`` rules)."""

    def may(action: Action, target: Target) -> bool:
        return decide(user, action, target, now=now, grant=grant).allowed

    per_copy = [CopyActions(copy_id=c.id, play=may(Action.STREAM, c.target), download=may(Action.EXPORT, c.target),
                            hold=not c.held and may(Action.HOLD, c.target),
                            release=c.held and may(Action.RELEASE_HOLD, c.target)) for c in copies]
    create = [tier for tier, action in COPY_ACTIONS.items() if source is not None and may(action, source)]
    may_hold = bool(copies) and all(may(Action.HOLD, c.target) for c in copies)
    may_release = bool(copies) and all(may(Action.RELEASE_HOLD, c.target) for c in copies)
    return RecordingActions(copies=per_copy, create=create,
                            hold_all=may_hold and any(not c.held for c in copies),
                            release_all=may_release and any(c.held for c in copies),
                            break_glass=user.role is Role.IT and decide(user, Action.BREAK_GLASS, None,
                                                                        now=now).allowed)
