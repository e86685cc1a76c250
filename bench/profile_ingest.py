"""Where an ingested call's time goes: pyinstrument profiles, not part of ``bench/run``.

Needs pyinstrument in the venv (``.venv/bin/pip install pyinstrument``; deliberately not a
project dependency). Two profiles per storage format, on the same scratch resources and the
same one-minute µ-law call as ``bench.ingest``:

1. ``ingest.service.ingest`` called in this process, one call after another, against the real
   MinIO and PostgreSQL (wall-clock profile: time waiting for ffmpeg, the database and MinIO
   shows up where it is spent). pyinstrument samples one thread, so this is how the code the
   worker runs in its thread pool is seen.
2. the real ``callvault worker`` run under ``pyinstrument -m callvault.cli worker`` while a
   backlog is ingested: its main thread, i.e. the faust/aiokafka event loop.

    .venv/bin/python -m bench.profile_ingest [--n 20] [--modes opus,flac]

Writes ``bench/out/profile-<format>-service.{txt,html}`` and ``profile-<format>-worker.txt``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench import ingest as bi


def profile_service(st, fmt: str, audio: bytes, n: int) -> Path:
    from pyinstrument import Profiler

    from callvault.bootstrap import build_worker_deps
    from ingest.runtime import prepare
    from ingest.service import ingest
    from ingest.settings import IngestSettings

    with bi.scratch_pipeline(st, fmt, common.OUT / f"profile-{fmt}-unused.log") as scratch:
        pipe = scratch.pipe
        worker_deps = build_worker_deps(pipe.storage, pipe.env["CALLVAULT_CATALOG_URL"],
                                        IngestSettings(storage_format=fmt))
        prepare(worker_deps)  # as the worker does before its first call
        deps = worker_deps.ingest
        warm = bi.build_messages(pipe, audio, 2, f"{fmt}-pwarm")
        for _k, value, _rid in warm:
            ingest(value, deps)
        msgs = bi.build_messages(pipe, audio, n, f"{fmt}-prof")
        common.wait_quiet()
        profiler = Profiler(interval=0.0005)
        t0 = time.perf_counter()
        profiler.start()
        for _k, value, _rid in msgs:
            result = ingest(value, deps)
            assert result.outcome.value == "stored"
        profiler.stop()
        wall = time.perf_counter() - t0
        deps.engine.dispose()
    out = common.OUT / f"profile-{fmt}-service.txt"
    out.write_text(f"# ingest() x {n}, {fmt}, sequential in one thread: {wall:.2f}s, {1000 * wall / n:.0f} ms/call\n"
                   + profiler.output_text(unicode=True, color=False, show_all=False))
    (common.OUT / f"profile-{fmt}-service.html").write_text(profiler.output_html())
    common.say(f"profile[{fmt}] service: {1000 * wall / n:.0f} ms/call sequential -> {out}")
    return out


def profile_worker(st, fmt: str, audio: bytes, n: int) -> Path:
    out = common.OUT / f"profile-{fmt}-worker.txt"
    with bi.scratch_pipeline(st, fmt, common.OUT / f"profile-{fmt}-worker.log") as scratch:
        pipe = scratch.pipe
        log = pipe.log_path.open("ab")
        # pyinstrument runs the worker module in this same interpreter process: its main thread is profiled.
        pipe.process = subprocess.Popen(
            [sys.executable, "-m", "pyinstrument", "--interval", "0.001", "-r", "text",
             "-o", str(out), "-m", "callvault.cli", "worker", "-l", "info"],
            env=pipe.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        bi.measure(scratch, bi.build_messages(pipe, audio, 2, f"{fmt}-wwarm"), interval=None, timeout=240)
        common.wait_quiet()
        r = bi.measure(scratch, bi.build_messages(pipe, audio, n, f"{fmt}-wprof"), interval=None, timeout=600)
        common.say(f"profile[{fmt}] worker: {r['calls_per_s']:.2f} calls/s under pyinstrument")
        os.killpg(pipe.process.pid, signal.SIGINT)
        try:
            pipe.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(pipe.process.pid, signal.SIGKILL)
    if not out.exists():
        common.say(f"profile[{fmt}] worker: pyinstrument wrote nothing (see {pipe.log_path})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="calls per profile")
    parser.add_argument("--modes", default="opus,flac")
    parser.add_argument("--only", choices=["service", "worker"], help="one of the two profiles")
    args = parser.parse_args(argv)
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        sys.exit("pyinstrument is not installed: .venv/bin/pip install pyinstrument")
    st = common.stack()
    common.OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        audio = bi.make_call_wav(Path(tmp)).read_bytes()
        for fmt in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if args.only in (None, "service"):
                profile_service(st, fmt, audio, args.n)
            if args.only in (None, "worker"):
                profile_worker(st, fmt, audio, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
