"""Test audio made on the fly, so no binary fixture is committed and every case is reproducible.

Tones are written with the standard ``wave`` module (exact PCM we can compare against) and
transcoded with the real ffmpeg CLI into the formats telephony sends.  Tests, benchmarks and
the README demo can import these; nothing here depends on pytest.
"""

from __future__ import annotations

import array
import io
import math
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Sequence

# ffmpeg arguments and file suffix (the container) per format telephony may send.
# ``-fflags +bitexact`` keeps the outputs byte-identical from run to run.
CODECS: dict[str, tuple[tuple[str, ...], str]] = {
    "pcm_s16le": (("-c:a", "pcm_s16le"), ".wav"),
    "pcm_u8": (("-c:a", "pcm_u8"), ".wav"),
    "mulaw": (("-c:a", "pcm_mulaw"), ".wav"),
    "alaw": (("-c:a", "pcm_alaw"), ".wav"),
    "mp3": (("-c:a", "libmp3lame", "-b:a", "32k"), ".mp3"),
    "opus": (("-c:a", "libopus", "-b:a", "24k"), ".ogg"),
    "flac": (("-c:a", "flac"), ".flac"),
}


def sine_pcm(seconds: float, rate: int = 8000, channels: int = 1, freqs: Sequence[float] = (440.0,),
             amplitude: float = 0.5) -> bytes:
    """Interleaved signed 16-bit little-endian PCM; channel ``c`` plays ``freqs[c % len(freqs)]``."""
    frames = int(round(seconds * rate))
    peak = amplitude * 32767
    samples = array.array("h", bytes(2 * frames * channels))
    for c in range(channels):
        step = 2 * math.pi * freqs[c % len(freqs)] / rate
        for i in range(frames):
            samples[i * channels + c] = int(round(peak * math.sin(step * i)))
    return samples.tobytes()


def pcm_to_wav(pcm: bytes, rate: int = 8000, channels: int = 1, sample_width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sample_width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def sine_wav(seconds: float, rate: int = 8000, channels: int = 1, freqs: Sequence[float] = (440.0,),
             amplitude: float = 0.5) -> bytes:
    """A 16-bit PCM WAV of a sine tone per channel (different ``freqs`` make channels distinct)."""
    return pcm_to_wav(sine_pcm(seconds, rate, channels, freqs, amplitude), rate, channels)


def transcode(wav_bytes: bytes, codec_args: Sequence[str], suffix: str) -> bytes:
    """Run the ffmpeg CLI on ``wav_bytes``; ``suffix`` (".mp3", ".ogg"...) picks the container.

    Output goes to a real file, not a pipe, so muxers that rewrite their header at the end
    (FLAC's STREAMINFO, WAV's sizes) produce what a telephony system would.
    """
    with tempfile.TemporaryDirectory(prefix="cv-fixture-") as tmp:
        src, dst = Path(tmp, "in.wav"), Path(tmp, "out" + suffix)
        src.write_bytes(wav_bytes)
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                        *codec_args, "-fflags", "+bitexact", str(dst)], check=True, capture_output=True)
        return dst.read_bytes()


def encode(wav_bytes: bytes, codec: str) -> bytes:
    """``transcode`` with one of the ``CODECS`` names."""
    args, suffix = CODECS[codec]
    return transcode(wav_bytes, args, suffix)


def tone_power(samples: Sequence[int], rate: int, freq: float) -> float:
    """Goertzel power of ``freq`` in ``samples``, normalised by length (to tell channels apart)."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / max(len(samples), 1) ** 2
