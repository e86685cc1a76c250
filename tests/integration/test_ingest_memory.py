"""The worker's memory does not grow with a call's length (issue 14), through the real worker:
a 1-hour 48 kHz stereo call is stored with the worker's peak RSS under 300 MB (its ffmpeg
children apart), and a 4-hour 6 kbit/s file (a decompression bomb: ~11 MB that decodes to
2.7 GB of PCM) is stored the same way or dead-lettered, leaving the worker unharmed."""

from __future__ import annotations

import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.producer import Call

pytestmark = pytest.mark.integration
LIMIT_MB = 300


def _opus(path: Path, seconds: int, kbps: int) -> bytes:
    """A 48 kHz stereo Opus call: a different tone left and right, and some noise, like speech."""
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=48000:duration={seconds}",
                    "-f", "lavfi", "-i", f"anoisesrc=color=pink:sample_rate=48000:amplitude=0.1:duration={seconds}",
                    "-filter_complex", "[0][1]amerge=inputs=2[a]", "-map", "[a]", "-ac", "2",
                    "-c:a", "libopus", "-b:a", f"{kbps}k", "-application", "voip", str(path)],
                   check=True, capture_output=True, timeout=900)
    return path.read_bytes()


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise AssertionError("no VmHWM")


def _reset_hwm(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def test_long_and_bomb_calls_keep_the_worker_under_300_mb(pipeline, tmp_path) -> None:
    hour = _opus(tmp_path / "hour.opus", 3600, 32)
    bomb = _opus(tmp_path / "bomb.opus", 4 * 3600, 6)
    now = datetime.now(timezone.utc)
    pid = pipeline.process.pid
    peaks = {}
    for name, audio, started in (("hour", hour, now - timedelta(hours=1, minutes=1)),
                                 ("bomb", bomb, now - timedelta(hours=4, minutes=1))):
        rid = f"{name}-{uuid.uuid4().hex[:6]}"
        _reset_hwm(pid)
        pipeline.push(Call(audio=audio, tenant="acme", agent_id="a1", caller_number="+33612345678",
                           started_at=started, recording_id=rid, redactions=((600_000, 660_000),)))
        [event] = pipeline.wait_for(lambda e, rid=rid: e.get("external_id") == rid or e.get("key") == rid.encode(),
                                    count=1, timeout=900)
        peaks[name] = _hwm_mb(pid)
        assert pipeline.process.poll() is None, "the worker died"
        if name == "hour":
            assert event["type"] == "stored" and abs(event["duration_ms"] - 3_600_000) < 100, event
        else:
            assert event.get("type") == "stored" or event.get("reason") == "audio_too_large", event
    print(f"\nworker peak RSS: {peaks}")
    assert max(peaks.values()) < LIMIT_MB, peaks
