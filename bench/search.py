"""Search at catalog scale (issue 20): ``callvault api`` against the indexed SELECT of the same rows.

Catalog, not timed: one scratch PostgreSQL schema migrated with the real migrations, one tenant,
1,000,000 recordings (``--quick``: 100,000) over 90 days, 500 agents in 50 teams, 20,000 numbers
(``--quick``: 2,000), built by PostgreSQL with ``INSERT … SELECT generate_series``. Every number
has a real caller key (``KeyRing.caller_key``) and every recording its number sealed under it
(``KeyRing.seal_number``, computed here and loaded with COPY), so the API opens numbers as in
production and a number search hits through ``KeyRing.number_hash``. Copies: a production copy
each (2 % expired, 0.2 % held, 0.1 % being deleted), a monitoring copy for 1 in 10, a training
copy for 1 in 40, a complaint extract for 1 in 200; 1 % of recordings restricted. Then
``VACUUM ANALYZE``.

Timed: for each user and filter (internal control by number, by team over 30 days, by agent, by
tier, no filter; a manager by team over 30 days; a coach; a consultant's own calls; IT without
filter and by number under a break-glass grant), page 1 and deep pages (depth 10,000, 100,000
and the last page, where the result set has them). A deep page is reached the way a client
reaches it: with the cursor of the recording just before it, read here from SQL (the cursor is
the encoded sort key). Each API request (``GET /recordings`` or ``POST /recordings/search``,
50 per page, keep-alive, bearer token) is interleaved with its baseline: the SELECT of the same
rows (the search's own SQL scope, same keyset predicate, same LIMIT), sent by psycopg on one
open connection and fetched. p50/p99 in ms, the ratio API p99 ÷ SELECT p99 (goal ≤ 3), and the
API process's CPU per request. Every API page is checked against its SELECT (same ids, same order).
A second baseline, interleaved too: the floor of an audited search (``common.FLOOR_AUDIT``), the
same SELECT then one durable INSERT of an audit-sized row on the same connection (autocommit: its
commit flushes the WAL), since every search must commit its audit entry before it answers.

Before: ``--before REV`` runs the same cases against the API of an older commit (its tree
exported with ``git archive``; the catalog keeps this revision's indexes, which can only help
it), page 1 and depth 10,000, fewer requests (each case is cut at ``--before-budget`` seconds).
``--before-keyset``: the older commit already pages by keyset (version-2 cursors, e.g. the
follow-ups of issue 20): then it runs every depth, as many requests as ``--reps``, its pages
checked against their SELECT as this revision's are.

    .venv/bin/python -m bench.search [--quick] [--reps 200] [--before 27573a7] [--before 95b7484 --before-keyset]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

GOAL_RATIO = 3.0
PAGE = 50
SECRET = "bench-" + "s" * 40
DAYS = 90
ROWS_PER_STATEMENT = 100_000
QUIET_WAIT = 10  # s: at most this long for a quiet host before each case (the host is shared)


@dataclass(frozen=True)
class Scale:
    recordings: int
    numbers: int
    agents: int = 500
    teams: int = 50


FULL, QUICK = Scale(1_000_000, 20_000), Scale(100_000, 2_000)


def number_of(n: int) -> str:
    return f"+336{10_000_000 + n:08d}"


def recording_id(i: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"r{i}".encode()).hexdigest())  # = md5('r' || i)::uuid


# -- the catalog ----------------------------------------------------------------------------------
_RECORDINGS = """
INSERT INTO recordings (id, tenant_id, external_id, started_at, direction, caller_number_sealed, caller_key_id,
                        number_hash, agent_id, team_id, duration_ms, audio_format, channels, redactions, restricted,
                        restricted_at, created_at, content_sha256)
SELECT md5('r' || i)::uuid, 'acme', 'ext-' || i, :start + i::bigint * :step * interval '1 microsecond',
       CASE WHEN i % 3 = 0 THEN 'outbound' ELSE 'inbound' END, s.sealed, n.key_id, n.number_hash,
       'agent-' || (i * 7 % :agents), 'team-' || (i * 7 % :agents % :teams), 60000 + i % 600000, 'opus', 1,
       '[]'::jsonb, i % 100 = 7, CASE WHEN i % 100 = 7 THEN :now END, :start + i::bigint * :step * interval '1 microsecond',
       md5('c' || i) || md5('d' || i)
FROM generate_series(:lo, :hi - 1) AS i
JOIN bench_sealed s ON s.k = i JOIN bench_numbers n ON n.n = s.n
"""
_COPY = """
INSERT INTO copies (id, recording_id, tier, reason, object_key, bucket, size_bytes, stored_sha256, wrapped_data_key,
                    caller_key_id, frame_size, created_at, created_by, training_report, expires_at, hold, hold_reason,
                    hold_actor, hold_at, deleting_at)
SELECT md5(:tier || i)::uuid, r.id, :tier, {reason}, 'acme/' || r.id || '/' || :tier || '.cve', 'bench', 123000,
       md5('s' || i) || md5('t' || i), decode(md5('w' || i) || md5('x' || i), 'hex'), r.caller_key_id, 65536,
       r.started_at, 'bench', {report},
       CASE WHEN i % 50 = 5 THEN :now - interval '1 day' ELSE r.started_at + interval '{months} months' END,
       i % 500 = 11, CASE WHEN i % 500 = 11 THEN 'case' END, CASE WHEN i % 500 = 11 THEN 'ic' END,
       CASE WHEN i % 500 = 11 THEN :now END, CASE WHEN i % 1000 = 13 THEN :now END
FROM generate_series(:lo, :hi - 1) AS i JOIN recordings r ON r.id = md5('r' || i)::uuid
WHERE i % :every = :which
"""
TIER_COPIES = (("production", 1, 0, 3), ("monitoring", 10, 1, 3), ("training", 40, 2, 12),
               ("complaint-extract", 200, 3, 36))


def _number_of_recording(i: int, numbers: int) -> int:
    return (i * 2_654_435_761) % numbers  # spread each number over the 90 days


def build_catalog(engine, keys, scale: Scale, now: datetime) -> dict:
    """The tenant, the users, the numbers' keys and the recordings with their copies; seconds taken."""
    import sqlalchemy as sa

    from access.identities import add_user
    from storage.catalog import tables as t
    from storage.catalog.migrate import upgrade

    t0 = time.perf_counter()
    upgrade(engine)
    start = now - timedelta(days=DAYS)
    step = int(DAYS * 86_400 * 1e6 // scale.recordings)  # µs between calls: every started_at distinct
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=start))
        for uid, role, teams, agent in (("control-1", "internal-control", [], None),
                                        ("manager-1", "manager", [("acme", "team-7", "manager")], None),
                                        ("coach-1", "coach", [("acme", "team-3", "coach")], None),
                                        ("consultant-1", "consultant", [("acme", "team-21", "member")], "agent-21"),
                                        ("it-1", "it", [], None)):
            add_user(conn, user_id=uid, role=role, tenants=["acme"], teams=teams, agent_id=agent)
        conn.execute(sa.text("CREATE TABLE bench_numbers (n int PRIMARY KEY, key_id uuid, number_hash text)"))
        conn.execute(sa.text("CREATE TABLE bench_sealed (k int PRIMARY KEY, n int, sealed bytea)"))
        callers = []
        for n in range(scale.numbers):
            number_hash = keys.number_hash("acme", number_of(n))
            callers.append(keys.caller_key(conn, tenant="acme", number_hash=number_hash))
            conn.execute(sa.text("INSERT INTO bench_numbers VALUES (:n, :k, :h)"),
                         {"n": n, "k": callers[-1].id, "h": number_hash})
    common.say(f"  {scale.numbers:,} caller keys: {time.perf_counter() - t0:.0f} s")
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy("COPY bench_sealed (k, n, sealed) FROM STDIN") as copy:
            for i in range(scale.recordings):
                n = _number_of_recording(i, scale.numbers)
                copy.write_row((i, n, keys.seal_number(callers[n], tenant="acme", recording_id=recording_id(i),
                                                       e164=number_of(n))))
        raw.commit()
    finally:
        raw.close()
    common.say(f"  sealed numbers loaded: {time.perf_counter() - t0:.0f} s")
    args = {"start": start, "step": step, "now": now, "agents": scale.agents, "teams": scale.teams}
    for lo in range(0, scale.recordings, ROWS_PER_STATEMENT):
        hi = min(scale.recordings, lo + ROWS_PER_STATEMENT)
        with engine.begin() as conn:
            conn.execute(sa.text(_RECORDINGS), {**args, "lo": lo, "hi": hi})
            for tier, every, which, months in TIER_COPIES:
                sql = _COPY.format(reason="'case-' || i" if tier == "complaint-extract" else "''",
                                   report="'report'" if tier == "training" else "NULL", months=months)
                conn.execute(sa.text(sql), {"now": now, "lo": lo, "hi": hi, "tier": tier, "every": every,
                                            "which": which})
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bench_sealed"))
        conn.execute(sa.text("DROP TABLE bench_numbers"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        counts = {name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar()
                  for name in ("recordings", "copies")}
    took = time.perf_counter() - t0
    common.say(f"  catalog: {counts['recordings']:,} recordings, {counts['copies']:,} copies in {took:.0f} s")
    return {"seconds": took, **counts}


# -- the cases ------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    user: str
    params: dict = field(default_factory=dict)  # API filters (GET query, or POST body with "number")
    depths: tuple[int, ...] = (0, 10_000, 100_000, -1)  # -1: the last page
    context: bool = False  # shown, not a goal

    @property
    def post(self) -> bool:
        return "number" in self.params


def cases(now: datetime, probe_number: str) -> list[Case]:
    month = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()}
    return [
        Case("internal control, by number", "control-1", {"number": probe_number}, (0,)),
        Case("internal control, by team over 30 days", "control-1", {"team": "team-7", **month}),
        Case("internal control, by agent", "control-1", {"agent": "agent-42"}),
        Case("internal control, by tier (training)", "control-1", {"tier": "training"}),
        Case("internal control, no filter", "control-1", {}),
        Case("manager, by team over 30 days", "manager-1", {"team": "team-7", **month}),
        Case("coach, their team", "coach-1", {}),
        Case("consultant, own calls", "consultant-1", {}),
        Case("IT, no filter (numbers masked)", "it-1", {}),
        Case("IT, by number under break-glass", "it-1", {"number": probe_number}, (0,)),
        # Context, not a search anyone needs: an empty page is the API's fixed cost per request
        # (token, user, gate, audit entry, response) over a SELECT that finds nothing.
        Case("internal control, an agent without calls (empty page)", "control-1", {"agent": "nobody"}, (0,),
             context=True),
    ]


def _filters(params: dict):
    from access.api.search import Filters

    at = {k: datetime.fromisoformat(params[k]) if k in params else None for k in ("from", "to")}
    return Filters(number=params.get("number"), agent=params.get("agent"), team=params.get("team"),
                   start=at["from"], end=at["to"], tier=params.get("tier"))


def _user(conn, user_id: str):
    from access.identities import load_user

    return load_user(conn, user_id)


def baseline_sql(engine, keys, case: Case, grants, cursor) -> str:
    """The search's own SQL scope for this case, the keyset predicate and LIMIT, as one literal SELECT."""
    from access.api.search import after, scoped

    with engine.connect() as conn:
        query = scoped(conn, keys, _user(conn, case.user), _filters(case.params), grants)
        stmt = query.where(*after(cursor)).limit(PAGE + 1)
        return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


_DEPTHS: dict = {}


def depth_key(engine, keys, case: Case, grants, depth: int):
    """The sort key of the recording just before ``depth`` (None: page 1), the result set's size and the
    depth itself (-1: the last page's; None: the result set is not that deep). Cached per case."""
    if (case.name, depth) not in _DEPTHS:
        _DEPTHS[case.name, depth] = _depth_key(engine, keys, case, grants, depth)
    return _DEPTHS[case.name, depth]


def _depth_key(engine, keys, case: Case, grants, depth: int):
    import sqlalchemy as sa

    from access.api.search import Cursor, scoped

    with engine.connect() as conn:
        query = scoped(conn, keys, _user(conn, case.user), _filters(case.params), grants)
        total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
        if depth == -1:
            depth = max(0, (total - 1) // PAGE * PAGE)
        if depth == 0 or depth >= total:
            return None, total, (0 if depth == 0 else None)
        row = conn.execute(query.offset(depth - 1).limit(1)).mappings().one()
        return Cursor(row["started_at"], row["id"]), total, depth


def encode_cursor(cursor, old_format: bool) -> str:
    if not old_format:
        return cursor.encode()
    raw = json.dumps([cursor.started_at.isoformat(), str(cursor.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- measuring ------------------------------------------------------------------------------------
def _request(conn: list, case: Case, token: str, cursor_text: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    if case.post:
        body = json.dumps({**case.params, "limit": PAGE, **({"cursor": cursor_text} if cursor_text else {})})
        headers["Content-Type"] = "application/json"
        conn[0].request("POST", "/recordings/search", body=body, headers=headers)
    else:
        query = urlencode({**case.params, "limit": PAGE, **({"cursor": cursor_text} if cursor_text else {})})
        conn[0].request("GET", f"/recordings?{query}", headers=headers)
    resp = conn[0].getresponse()
    data = resp.read()
    assert resp.status == 200, (resp.status, data[:300])
    return [item["id"] for item in json.loads(data)["items"]]


# API (0), SELECT (1) and the audited floor (2), each going first in turn.
_ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))


def measure_case(port: int, pid: int, raw, token: str, case: Case, sql: str, cursor_text: str | None,
                 reps: int, budget: float, check: bool) -> dict:
    conn = [http.client.HTTPConnection("127.0.0.1", port, timeout=600)]
    api_ms, select_ms, floor_ms = [], [], []
    expected = None
    cpu0 = common.process_cpu_seconds(pid)
    watch = common.CpuWatch()
    t_end = time.monotonic() + budget
    with raw.cursor() as cur:
        for rep in range(reps):
            for first in _ORDERS[rep % len(_ORDERS)]:
                t0 = time.perf_counter()
                if first == 0:
                    got = _request(conn, case, token, cursor_text)
                    api_ms.append((time.perf_counter() - t0) * 1000)
                elif first == 1:
                    cur.execute(sql)
                    rows = cur.fetchall()
                    select_ms.append((time.perf_counter() - t0) * 1000)
                    expected = [str(row[0]) for row in rows[:PAGE]]
                else:  # the floor of an audited search: the same SELECT, then the entry's durable INSERT
                    cur.execute(sql)
                    cur.fetchall()
                    common.floor_audit_append(cur)
                    floor_ms.append((time.perf_counter() - t0) * 1000)
            matches = got == expected
            assert matches or not check, f"{case.name}: the API page differs from its SELECT"
            if time.monotonic() > t_end:
                break
    load = watch.stop()
    cpu = common.process_cpu_seconds(pid) - cpu0
    conn[0].close()
    api, sel, flo = _ms(api_ms), _ms(select_ms), _ms(floor_ms)
    return {"api_ms": api, "select_ms": sel, "ratio_p50": api["p50"] / sel["p50"], "ratio_p99": api["p99"] / sel["p99"],
            "floor_ms": flo, "floor_ratio_p99": api["p99"] / flo["p99"],
            "api_cpu_ms_per_request": 1000 * cpu / len(api_ms), "rows": len(expected or []), "matches_select": matches,
            "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"],
            "host_busy_pct": load["host_busy_pct"]}


def _ms(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": common.percentile(xs, 50), "p99": common.percentile(xs, 99), "max": max(xs)}


def grant_break_glass(engine, rid: uuid.UUID, now: datetime) -> None:
    from storage.catalog import tables as t

    with engine.begin() as conn:
        conn.execute(t.break_glass.insert().values(
            id=uuid.uuid4(), user_id="it-1", ticket="INC-bench", granted_at=now, expires_at=now + timedelta(hours=8),
            recording_id=rid, tiers=["production"]))


def run_cases(st, engine, keys, env, cwd: Path | None, *, now, probe_number, grants, reps: int, budget: float,
              depths: tuple[int, ...] | None, old_cursor: bool, label: str, tries: int) -> list[dict]:
    from pydantic import SecretStr

    from access.settings import AccessSettings
    from access.tokens import issue_token
    from testbed.api import ApiProcess

    settings = AccessSettings(jwt_secret=SecretStr(SECRET))
    log = common.OUT / f"search-api-{label}.log"
    log.unlink(missing_ok=True)
    out = []
    raw = engine.raw_connection()
    raw.autocommit = True
    common.floor_audit_table(raw)
    try:
        with ApiProcess(env, log, cwd=cwd) as api:
            for case in cases(now, probe_number):
                token = issue_token(case.user, settings, ttl=timedelta(hours=8))
                granted = grants if case.user == "it-1" and case.post else None
                for depth in (case.depths if depths is None else [d for d in depths if d in case.depths]):
                    cursor, total, at = depth_key(engine, keys, case, granted, depth)
                    if at is None:
                        continue  # the result set is not that deep
                    sql = baseline_sql(engine, keys, case, granted, cursor)
                    cursor_text = encode_cursor(cursor, old_cursor) if cursor else None

                    def measure(case=case, sql=sql, cursor_text=cursor_text, token=token) -> dict:
                        common.wait_quiet(max_wait=QUIET_WAIT)
                        return measure_case(api.port, api.process.pid, raw, token, case, sql, cursor_text, reps,
                                            budget, check=not old_cursor)

                    m = common.least_contended(measure, tries=tries)
                    m.update(case=case.name, depth=at, result_set=total, code=label, context=case.context)
                    common.say(f"  [{label}] {case.name} @ {at:,} of {total:,}: API p50/p99 "
                               f"{m['api_ms']['p50']:.1f}/{m['api_ms']['p99']:.1f} ms, SELECT "
                               f"{m['select_ms']['p50']:.2f}/{m['select_ms']['p99']:.2f} ms, p99 ratio "
                               f"{m['ratio_p99']:.1f}×, audited floor p99 {m['floor_ms']['p99']:.2f} ms "
                               f"({m['floor_ratio_p99']:.1f}×), API CPU {m['api_cpu_ms_per_request']:.1f} ms/request "
                               f"(n={m['api_ms']['n']}, foreign {m['foreign_cores']:.2f} cores)")
                    out.append(m)
    finally:
        raw.close()
    return out


def export_tree(rev: str) -> Path:
    """The tree of ``rev`` in a temporary directory (``git archive``), to run its API."""
    where = Path(tempfile.mkdtemp(prefix="callvault-before-"))
    archive = subprocess.run(["git", "-C", str(common.ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def run(quick: bool, reps: int | None, before: str | None, before_budget: float, before_keyset: bool = False) -> dict:
    from storage.admin import init_buckets
    from storage.catalog.db import make_engine
    from storage.keys import KeyRing
    from testbed.pipeline import service_env

    st = common.stack()
    scale = QUICK if quick else FULL
    reps = reps or (50 if quick else 200)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    prefix = common.unique("bench-search")
    settings = common.storage_settings(st, prefix)
    init_buckets(settings, say=lambda _m: None)
    schema, url = common.pg_schema(st, prefix)
    engine = make_engine(url, echo=False)
    keys = KeyRing.from_settings(settings)
    results: dict = {"benchmark": "search", "date": common.now_iso(), "quick": quick, "goal_p99_ratio": GOAL_RATIO,
                     "page": PAGE, "scale": scale.__dict__, "machine": common.machine(st)}
    try:
        common.say(f"search: building {scale.recordings:,} recordings")
        results["catalog"] = build_catalog(engine, keys, scale, now)
        probe = _number_of_recording(12_345, scale.numbers)
        granted = recording_id(12_345)
        grant_break_glass(engine, granted, now)
        env = {**service_env(settings, url), "CALLVAULT_ACCESS_JWT_SECRET": SECRET}
        common.OUT.mkdir(parents=True, exist_ok=True)
        kw = dict(now=now, probe_number=number_of(probe), grants=frozenset({str(granted)}))
        if before:
            tree = export_tree(before)
            results["before_rev"] = before
            results["before_keyset"] = before_keyset
            before_reps = reps if before_keyset else max(5, reps // 10)
            results["before"] = run_cases(st, engine, keys, env, tree, reps=before_reps, budget=before_budget,
                                          depths=None if before_keyset else (0, 10_000),
                                          old_cursor=not before_keyset, label="before", tries=1, **kw)
        results["after"] = run_cases(st, engine, keys, env, None, reps=reps, budget=600, depths=None,
                                     old_cursor=False, label="after", tries=2, **kw)
    finally:
        engine.dispose()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(settings, [settings.recordings_bucket, settings.landing_bucket,
                                         settings.exports_bucket])
    worst = max((m for m in results["after"] if not m["context"]), key=lambda m: m["ratio_p99"])
    results["worst_p99_ratio"] = worst["ratio_p99"]
    results["goal_met"] = worst["ratio_p99"] <= GOAL_RATIO
    return results


def render_into_results() -> int:
    """This benchmark's section of RESULTS.md, in place of the old one (else before "## Analysis")."""
    from bench import report

    section = "\n".join(report.search_section(json.loads((common.OUT / "search.json").read_text())))
    text = report.RESULTS.read_text()
    title = "## Search at catalog scale"
    if title in text:
        head, rest = text.split(title, 1)
        end = rest.find("\n## ")  # the next level-2 heading ("### Before" is part of this section)
        tail = rest[end:] if end >= 0 else "\n"
        text = head + section.rstrip() + "\n" + tail
    else:
        head, sep, rest = text.partition("## Analysis")
        text = head + section.rstrip() + "\n\n" + sep + rest
    report.RESULTS.write_text(text)
    common.say(f"wrote {report.RESULTS}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 recordings, 50 requests per case")
    parser.add_argument("--reps", type=int, help="requests per case and depth (default 200, --quick 50)")
    parser.add_argument("--before", metavar="REV", help="also measure the API of this commit (e.g. 27573a7)")
    parser.add_argument("--before-budget", type=float, default=20.0, help="seconds per case for --before")
    parser.add_argument("--before-keyset", action="store_true",
                        help="--before REV already pages by keyset (version-2 cursors): every depth, --reps requests")
    parser.add_argument("--render", action="store_true",
                        help="no run: put bench/out/search.json's section into RESULTS.md (replacing it)")
    args = parser.parse_args(argv)
    if args.render:
        return render_into_results()
    results = run(args.quick, args.reps, args.before, args.before_budget, args.before_keyset)
    path = common.write_json("search", results)
    common.say(f"wrote {path}; worst p99 ratio {results['worst_p99_ratio']:.2f}× (goal ≤ {GOAL_RATIO}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
