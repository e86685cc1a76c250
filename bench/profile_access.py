"""Where a Range request's time goes in the API (not run by ``bench/run``).

Same world as ``bench.access`` (scratch schema and bucket, a manager, a 1-hour Opus-sized
encrypted copy). Two views of one 64 KiB ``GET /copies/{id}/audio``:

- what it asks of the servers: the SQL statements and object GETs of one request (the app
  in-process through FastAPI's TestClient, statements counted by a SQLAlchemy event);
- where the API process spends its CPU: py-spy (``pip install py-spy``; not a project
  dependency) sampling every thread of ``callvault api`` during N requests, summed per
  library and per callvault function, in ms per request.

    .venv/bin/python -m bench.profile_access [--requests 400] [--count-only]

Output: stdout, and py-spy's collapsed stacks in ``bench/out/profile-access-spy.txt``.
Findings: ``NOTES.md``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import access, common  # noqa: E402

RATE = 500  # py-spy samples per second


def _requests_made(engine, store, keys, settings, token: str, obj: dict) -> tuple[list[str], list[str], int]:
    """(SQL round trips, GET ranges, pool checkouts) of one request, after a warm-up request.

    Counted at the driver (every ``psycopg`` cursor execute: one query string, one round trip,
    whether it holds one statement or two; and every commit/rollback), so that what bypasses
    SQLAlchemy's statement events (the audit's lock-and-head query) is counted too."""
    import psycopg
    import sqlalchemy as sa
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from access.api import create_app
    from access.settings import AccessSettings
    from lifecycle.deps import Services
    from lifecycle.settings import LifecycleSettings

    app = create_app(Services(engine, store, keys, storage=settings, lifecycle=LifecycleSettings()),
                     AccessSettings(jwt_secret=SecretStr(access.SECRET)))
    statements: list[str] = []
    gets: list[str] = []
    checkouts = [0]
    counting = [False]

    def on_checkout(*_args) -> None:
        checkouts[0] += counting[0]

    base = psycopg.Connection.__mro__[1]  # BaseConnection: BEGIN, COMMIT and ROLLBACK go by _exec_command
    real_execute, real_command = psycopg.Cursor.execute, base._exec_command

    def execute(self, query, *args, **kwargs):
        result = real_execute(self, query, *args, **kwargs)  # a BEGIN it needs goes first
        if counting[0]:
            text = query if isinstance(query, str) else getattr(query, "as_string", lambda _c: str(query))(self)
            statements.append(" ".join(str(text).split()[:4]))
        return result

    def command(self, cmd, *args, **kwargs):
        if counting[0]:
            statements.append(bytes(cmd).decode() if isinstance(cmd, (bytes, bytearray)) else str(cmd))
        return real_command(self, cmd, *args, **kwargs)

    real_get = store.client.get_object
    store.client.get_object = lambda **kw: gets.append(kw.get("Range")) or real_get(**kw)
    headers = {"Authorization": f"Bearer {token}", "Range": f"bytes={obj['start']}-{obj['end']}"}
    psycopg.Cursor.execute = execute
    base._exec_command = command
    sa.event.listen(engine.pool, "checkout", on_checkout)
    try:
        with TestClient(app) as client:
            client.get(f"/copies/{obj['copy_id']}/audio", headers=headers)
            gets.clear()
            counting[0] = True
            response = client.get(f"/copies/{obj['copy_id']}/audio", headers=headers)
            counting[0] = False
    finally:
        psycopg.Cursor.execute, base._exec_command = real_execute, real_command
        sa.event.remove(engine.pool, "checkout", on_checkout)
        store.client.get_object = real_get
    assert response.status_code == 206 and response.content == obj["expected"]
    return statements, gets, checkouts[0]


def _summarise(path: Path, requests: int) -> tuple[dict, dict]:
    """ms per request by (thread, library) and by deepest callvault function."""
    per_ms = 1000 / RATE / requests
    libraries: collections.Counter = collections.Counter()
    ours: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = "event loop" if "MainThread" in frames[0] else "worker threads"
        where = re.search(r"\(([^:)]+)", frames[-1])
        file = where.group(1) if where else frames[-1]
        lib = file.split("site-packages/")[1].split("/")[0] if "site-packages/" in file else file.split("/")[0]
        libraries[(thread, lib)] += int(count)
        mine = [f.split(" (")[0] for f in frames[1:]  # callvault/cli.py's `api` is under every loop frame
                if re.search(r"\((access|storage|callvault)/", f) and "callvault/cli.py" not in f]
        ours[(thread, mine[-1] if mine else "-")] += int(count)
    return ({k: v * per_ms for k, v in libraries.most_common(20)}, {k: v * per_ms for k, v in ours.most_common(25)})


def run(requests: int, count_only: bool = False) -> int:
    from pydantic import SecretStr

    from access.settings import AccessSettings
    from access.tokens import issue_token
    from storage.admin import init_buckets
    from storage.catalog.db import make_engine
    from storage.keys import KeyRing
    from storage.objectstore import ObjectStore
    from testbed.pipeline import service_env

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() and not count_only:
        common.say("py-spy not found: .venv/bin/pip install py-spy")
        return 1
    st = common.stack()
    prefix = common.unique("bench-prof-access")
    settings = common.storage_settings(st, prefix)
    init_buckets(settings, say=lambda _m: None)
    schema, url = common.pg_schema(st, prefix)
    engine = make_engine(url, echo=False)
    store, keys = ObjectStore.from_settings(settings), KeyRing.from_settings(settings)
    out = common.OUT / "profile-access-spy.txt"
    try:
        obj = access._world(engine, store, keys, settings.recordings_bucket, access.SIZES[:1])[0]
        token = issue_token("manager-1", AccessSettings(jwt_secret=SecretStr(access.SECRET)), ttl=timedelta(hours=1))
        statements, gets, checkouts = _requests_made(engine, store, keys, settings, token, obj)
        common.say(f"one request: {len(statements)} SQL round trips over {checkouts} pool checkouts, "
                   f"{len(gets)} GETs {gets}")
        for statement in statements:
            common.say(f"  {statement}")
        if count_only:
            return 0
        env = {**service_env(settings, url), "CALLVAULT_ACCESS_JWT_SECRET": access.SECRET}
        with access.api_server(env, common.OUT / "profile-access-api.log") as (proc, port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Authorization": f"Bearer {token}", "Range": f"bytes={obj['start']}-{obj['end']}"}

            def request() -> float:
                t0 = time.perf_counter()
                conn.request("GET", f"/copies/{obj['copy_id']}/audio", headers=headers)
                response = conn.getresponse()
                response.read(1)
                ttfb = time.perf_counter() - t0
                response.read()
                return ttfb

            for _ in range(30):
                request()
            sampler = subprocess.Popen([spy, "record", "-p", str(proc.pid), "--rate", str(RATE), "--format", "raw",
                                        "--threads", "--nonblocking", "-o", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(2)
            cpu0 = common.process_cpu_seconds(proc.pid)
            ttfb = [request() for _ in range(requests)]
            cpu = common.process_cpu_seconds(proc.pid) - cpu0
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
            conn.close()
        common.say(f"{requests} requests under py-spy: TTFB p50 {1000 * common.percentile(ttfb, 50):.1f} ms, p99 "
                   f"{1000 * common.percentile(ttfb, 99):.1f} ms; API process CPU {1000 * cpu / requests:.1f} ms "
                   "per request")
        libraries, ours = _summarise(out, requests)
        common.say("on-CPU samples, ms per request, by library:")
        for (thread, lib), ms in libraries.items():
            common.say(f"  {thread:15s} {lib:30s} {ms:6.2f}")
        common.say("by deepest callvault function:")
        for (thread, fn), ms in ours.items():
            common.say(f"  {thread:15s} {fn:40s} {ms:6.2f}")
    finally:
        engine.dispose()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(settings, [settings.recordings_bucket, settings.landing_bucket,
                                         settings.exports_bucket])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--count-only", action="store_true", help="the round trips of one request, no py-spy")
    args = parser.parse_args(argv)
    return run(args.requests, args.count_only)


if __name__ == "__main__":
    sys.exit(main())
