"""Worker memory: peak RSS of a real ``callvault worker`` while it ingests one 1-hour call.

The call: 3,600 s of 8 kHz mono µ-law WAV (28.8 MB; the 60 s flite speech of ``bench.ingest``
looped). Above the 512 KiB inline limit, so the producer uploads it to the landing bucket and
the Kafka message carries a claim check, as in production. The worker: default settings
(concurrency 4) on scratch topics, buckets and schema (``bench.ingest.scratch_pipeline``), one
per storage format (``opus``, the default, and ``flac``).

Measured from /proc, sampled every 50 ms: the worker's VmRSS (and VmHWM, the kernel's peak,
reset through ``/proc/<pid>/clear_refs`` just before each measured call; the peak reported is
the larger of the two), and the RSS of
every descendant (the ffmpeg decode and encode processes: each one's peak, and the most
resident at once). Baselines, same worker, same run: its RSS idle after start-up (Kafka
assignment done), and its peak while ingesting one 60 s call (inline). Goal: the worker's peak
< 300 MB (MB = 10^6 bytes) for the 1-hour call.

    .venv/bin/python -m bench.rss [--quick] [--modes opus,flac]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench import ingest as ingest_bench  # noqa: E402

GOAL_MB = 300.0
SAMPLE_S = 0.05


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def _descendants(root: int) -> dict[int, str]:
    """pid -> name of every process below ``root``."""
    table = common._proc_table()
    names = {pid: name for (pid, _start), (name, _ppid, _cpu) in table.items()}
    parent = {pid: ppid for (pid, _start), (_name, ppid, _cpu) in table.items()}
    out, todo = {}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = names[child]
            todo.append(child)
    return out


class Sampler(threading.Thread):
    """Polls the worker's and its descendants' memory every ``SAMPLE_S`` until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_event = threading.Event()
        self.samples = 0
        self.worker_rss_max_kb = 0
        self.children_peak_kb: dict[int, tuple[str, int]] = {}  # pid -> (name, highest VmHWM seen)
        self.children_sum_max_kb = 0
        self.tree_sum_max_kb = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            worker = _status_kb(self.pid).get("VmRSS", 0)
            kids = 0
            for child, name in _descendants(self.pid).items():
                st = _status_kb(child)
                kids += st.get("VmRSS", 0)
                peak = max(st.get("VmHWM", 0), self.children_peak_kb.get(child, (name, 0))[1])
                self.children_peak_kb[child] = (name, peak)
            self.worker_rss_max_kb = max(self.worker_rss_max_kb, worker)
            self.children_sum_max_kb = max(self.children_sum_max_kb, kids)
            self.tree_sum_max_kb = max(self.tree_sum_max_kb, worker + kids)
            self.samples += 1
            self.stop_event.wait(SAMPLE_S)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def _mb(kb: int) -> float:
    return kb * 1024 / 1e6


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of a process; False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_hour_wav(directory: Path) -> Path:
    minute = ingest_bench.make_call_wav(directory)
    hour = directory / "hour.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1",
                    "-i", str(minute), "-t", "3600", "-c:a", "pcm_mulaw", "-map_metadata", "-1",
                    "-fflags", "+bitexact", str(hour)], check=True, capture_output=True)
    return hour


def _message(pipe, audio: bytes, tag: str, *, inline: bool) -> tuple[bytes, bytes, str]:
    from ingest.producer import Call, Producer

    producer = Producer(pipe.kafka, pipe.storage, inline_max_bytes=ingest_bench.INLINE_MAX,
                        seal_keys=pipe.seal_keys)
    rid = f"bench-rss-{tag}-{uuid.uuid4().hex[:8]}"
    msg = producer.message_for(Call(audio=audio, tenant="acme", agent_id="agent-1", caller_number="+33612345678",
                                    started_at=datetime.now(timezone.utc) - timedelta(hours=2), recording_id=rid,
                                    team_id="team-1", audio_format="wav"))
    assert (msg.audio.inline is not None) == inline, "unexpected inline/claim-check choice"
    return rid.encode(), msg.to_bytes(), rid


def _ingest_one(pipe, message, timeout: float) -> dict:
    """Send one call, sample memory until it is stored."""
    pid = pipe.process.pid
    exact = _reset_peak(pid)
    sampler = Sampler(pid)
    watch = common.CpuWatch()
    cpu0 = common.process_cpu_seconds(pid, split=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        obs = asyncio.run(ingest_bench._produce_and_observe(pipe, [message], interval=None, timeout=timeout))
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    cpu1 = common.process_cpu_seconds(pid, split=True)
    load = watch.stop()
    if obs["dead"] or [kind for kind, _ts in obs["events"].values()] != ["stored"]:
        raise RuntimeError(f"call not stored: {obs['dead'] or obs['events']}\n{pipe.worker_log()}")
    status = _status_kb(pid)
    kids = sorted(sampler.children_peak_kb.values(), key=lambda x: -x[1])
    return {
        "seconds": wall, "samples": sampler.samples,
        # The kernel updates VmHWM lazily (on unmap): the larger of it and what was sampled.
        "worker_peak_mb": _mb(max(status["VmHWM"] if exact else 0, sampler.worker_rss_max_kb)),
        "worker_peak_source": "VmHWM reset before the call, or the highest VmRSS sampled" if exact
        else "highest VmRSS sampled",
        "worker_rss_max_sampled_mb": _mb(sampler.worker_rss_max_kb),
        "worker_rss_after_mb": _mb(status["VmRSS"]),
        "children": len(kids), "children_names": sorted({name for name, _kb in kids}),
        "child_peak_mb": _mb(kids[0][1]) if kids else 0.0,
        "children_peaks_mb": [round(_mb(kb), 1) for _name, kb in kids],
        "children_at_once_max_mb": _mb(sampler.children_sum_max_kb),
        "tree_max_mb": _mb(sampler.tree_sum_max_kb),
        "worker_python_cpu_s": cpu1[0] - cpu0[0], "worker_children_cpu_s": cpu1[1] - cpu0[1],
        "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"],
    }


def _wait_ready(pipe, timeout: float = 120) -> float:
    """Seconds until the worker logs faust's "Ready" (partitions assigned)."""
    t0 = time.monotonic()
    while "Ready" not in pipe.log_path.read_text(errors="replace"):
        if pipe.process.poll() is not None:
            raise RuntimeError(f"worker exited ({pipe.process.returncode}):\n{pipe.worker_log()}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"worker not ready after {timeout:.0f} s:\n{pipe.worker_log()}")
        time.sleep(0.2)
    return time.monotonic() - t0


def run_mode(st, fmt: str, minute: bytes, hour: bytes) -> dict:
    log_path = common.OUT / f"rss-{fmt}-worker.log"
    with ingest_bench.scratch_pipeline(st, fmt, log_path) as scratch:
        pipe = scratch.pipe
        common.say(f"rss[{fmt}]: starting worker")
        pipe.start_worker()
        ready_s = _wait_ready(pipe)
        time.sleep(5)  # let start-up settle (first fetches, metadata)
        idle = _status_kb(pipe.process.pid)
        idle_mb, startup_peak_mb = _mb(idle["VmRSS"]), _mb(idle["VmHWM"])
        common.say(f"  idle after start-up: {idle_mb:.0f} MB (start-up peak {startup_peak_mb:.0f} MB)")
        one_minute = _ingest_one(pipe, _message(pipe, minute, f"{fmt}-min", inline=True), timeout=240)
        common.say(f"  60 s call (inline): worker peak {one_minute['worker_peak_mb']:.0f} MB, "
                   f"largest ffmpeg {one_minute['child_peak_mb']:.0f} MB")
        hour_msg = _message(pipe, hour, f"{fmt}-hour", inline=False)
        common.wait_quiet()
        one_hour = _ingest_one(pipe, hour_msg, timeout=900)
        common.say(f"  1 h call (claim check): worker peak {one_hour['worker_peak_mb']:.0f} MB, largest ffmpeg "
                   f"{one_hour['child_peak_mb']:.0f} MB, worker + children at once {one_hour['tree_max_mb']:.0f} MB,"
                   f" {one_hour['seconds']:.0f} s")
        time.sleep(3)
        after = _mb(_status_kb(pipe.process.pid)["VmRSS"])
        return {"format": fmt, "ready_s": ready_s, "idle_mb": idle_mb, "startup_peak_mb": startup_peak_mb,
                "one_minute": one_minute, "one_hour": one_hour, "rss_after_hour_idle_mb": after,
                "ratio_vs_idle": one_hour["worker_peak_mb"] / idle_mb,
                "ratio_vs_one_minute": one_hour["worker_peak_mb"] / one_minute["worker_peak_mb"],
                "goal_met": one_hour["worker_peak_mb"] < GOAL_MB,
                "worker_log": str(log_path.relative_to(common.ROOT))}


def run(modes: list[str], quick: bool) -> dict:
    st = common.stack()
    common.OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        hour_wav = make_hour_wav(Path(tmp))
        minute, hour = (Path(tmp) / "call.wav").read_bytes(), hour_wav.read_bytes()
        results: dict = {"benchmark": "rss", "date": common.now_iso(), "quick": quick, "goal_mb": GOAL_MB,
                         "sample_interval_s": SAMPLE_S,
                         "audio": {"hour_bytes": len(hour), "minute_bytes": len(minute),
                                   "format": "WAV pcm_mulaw 8 kHz mono",
                                   "inline_max_bytes": ingest_bench.INLINE_MAX},
                         "modes": {}}
        for fmt in modes:
            results["modes"][fmt] = run_mode(st, fmt, minute, hour)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="opus only")
    parser.add_argument("--modes", help="storage formats (default opus,flac; --quick opus)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in (args.modes or ("opus" if args.quick else "opus,flac")).split(",") if m.strip()]
    results = run(modes, args.quick)
    path = common.write_json("rss", results)
    common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
