"""The two pieces that keep ingest's memory flat: decoded audio as a stream, ffmpeg under a deadline.

``PcmStream`` takes signed 16-bit PCM in pieces of any size and hands it on frame-aligned,
with the redaction spans silenced, hashed and counted as it goes by; nothing but the piece
in hand and one millisecond held back is kept.  ``Children`` runs the ffmpeg processes of one
call: all of them are killed together when the deadline passes, when anything raises, and on
the way out, so a hung or hostile decoder can neither stall the worker nor outlive it.
The sinks below (and ``ingest.audio``'s encoder) take the PCM from ``PcmStream``.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading
import wave
from typing import Callable, Iterable

from core.errors import ConfigurationError
from ingest.exceptions import AudioEncodingFailed, UndecodableAudio


class PcmStream:
    """Silence [start_ms, end_ms) spans sample-exactly (rounded outwards, as ``silence_spans``
    does), hash and count the PCM as it passes, and give each frame-aligned piece to ``emit``.

    The last millisecond is held back until :meth:`finish`: a span running past the end is cut
    at the rounded duration, which only the final frame count tells, and that cut can spare up
    to half a millisecond of frames that the uncut span would silence.  Holding them keeps the
    output (and the content hash) identical to silencing the whole buffer at once.
    """

    def __init__(self, rate: int, channels: int, pairs: Iterable[tuple[int, int]],
                 emit: Callable[[bytes | bytearray], None]) -> None:
        self.rate, self.width, self.emit = rate, 2 * channels, emit
        self.pairs = list(pairs)
        self.digest = hashlib.sha256(f"s16le/{rate}/{channels}\n".encode())
        self.frames = 0  # frames already handed on
        self._held = b""
        self._hold = (rate // 1000 + 1) * self.width

    def feed(self, data: bytes) -> None:
        buf = self._held + data if self._held else data
        cut = max(0, len(buf) - self._hold)
        cut -= cut % self.width
        self._held = buf[cut:]
        if cut:
            self._out(bytearray(buf[:cut]), self._frame_spans(self.pairs))

    def finish(self) -> int:
        """Hand on the held tail (a trailing partial frame is dropped); return the frame count."""
        tail = self._held[:len(self._held) - len(self._held) % self.width]
        frames = self.frames + len(tail) // self.width
        total = round(frames * 1000 / self.rate) if frames else 0
        cut = [(start, min(end, total)) for start, end in self.pairs if start < total]
        if tail:
            self._out(bytearray(tail), self._frame_spans(cut, frames))
        self._held = b""
        return self.frames

    def _frame_spans(self, pairs: Iterable[tuple[int, int]], frames: int | None = None) -> list[tuple[int, int]]:
        spans = [(a * self.rate // 1000, -(-b * self.rate // 1000)) for a, b in pairs]
        return [(first, min(last, frames)) for first, last in spans] if frames is not None else spans

    def _out(self, piece: bytearray, spans: list[tuple[int, int]]) -> None:
        start, width = self.frames, self.width
        end = start + len(piece) // width
        for first, last in spans:
            lo, hi = max(first, start), min(last, end)
            if lo < hi:
                piece[(lo - start) * width:(hi - start) * width] = bytes((hi - lo) * width)
        self.digest.update(piece)
        self.emit(piece)
        self.frames = end


class Children:
    """The ffmpeg processes of one call, under one wall-clock deadline.

    ``phase`` names what the caller is blocked on ("decode" or "encode"), so that an expired
    deadline is blamed on the right side of the pipe.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.phase = "decode"
        self.expired_in: str | None = None
        self._procs: list[subprocess.Popen] = []
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Children:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        self.kill()
        for proc in self._procs:
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except BrokenPipeError:  # an encoder that died with input still buffered
                        pass

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        try:
            proc = subprocess.Popen(cmd, **kwargs)
        except FileNotFoundError:
            raise ConfigurationError("ffmpeg", f"{cmd[0]!r} is not installed or not on PATH") from None
        self._procs.append(proc)
        return proc

    def check(self) -> None:
        """Raise if the deadline passed: the processes are dead and their output is cut short."""
        if self.expired_in == "encode":
            raise AudioEncodingFailed(f"ffmpeg could not encode within {self.timeout_s:g} s")
        if self.expired_in:
            raise UndecodableAudio(f"not decodable audio: decoding took over {self.timeout_s:g} s")

    def kill(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()

    def _expire(self) -> None:
        self.expired_in = self.phase
        self.kill()


def read_stderr(path: str, head: int = 65536, tail: int = 4096) -> tuple[str, bytes]:
    """ffmpeg's header lines (text) and its last bytes (for the error line) from a capture file:
    a corrupt input can make ffmpeg log a line per frame, so the whole file is never read."""
    with open(path, "rb") as fh:
        first = fh.read(head)
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - tail))
        last = fh.read(tail)
    return first.decode("utf-8", "replace"), last


class WavWriter:
    """WAV storage, as pydub's export writes it (the header is patched at the end): the output
    is the PCM itself, so this one sink holds the whole call."""

    def __init__(self, rate: int, channels: int) -> None:
        self.out = io.BytesIO()
        self.wav = wave.open(self.out, "wb")
        self.wav.setnchannels(channels)
        self.wav.setsampwidth(2)
        self.wav.setframerate(rate)

    def write(self, piece: bytes | bytearray) -> None:
        self.wav.writeframesraw(piece)

    def finish(self) -> bytes:
        self.wav.close()
        return self.out.getvalue()


class Collect:
    """The whole PCM, for ``ingest.audio.decode`` (tests and tools, never the worker)."""

    def __init__(self) -> None:
        self.pcm = bytearray()

    def write(self, piece: bytes | bytearray) -> None:
        self.pcm += piece

    def finish(self) -> bytes:
        return bytes(self.pcm)


class Discard:
    """Pass-through storage keeps the sender's file: the PCM is only hashed."""

    def write(self, piece: bytes | bytearray) -> None:
        pass

    def finish(self) -> bytes:
        return b""
