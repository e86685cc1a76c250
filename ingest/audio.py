"""Decode, redact and normalise call audio: streamed in bounded pieces, ffmpeg for codecs.

ffmpeg is run directly rather than through ``AudioSegment.from_file``/``export``: pydub
probes first and picks the output PCM from the probe, so G.711 µ-law and A-law come back
as 8-bit linear PCM (coarser than the source), Ogg/Opus as 32-bit samples at 48 kHz, and
its errors carry ffmpeg's whole banner.  Here every input is decoded once to signed 16-bit
PCM at its own rate with its own channels: a stereo call is agent + customer and is never
downmixed.  ffmpeg sniffs the container; the message's format is only a fallback.  Only
the WAV, MP3, Ogg and FLAC demuxers and the file protocol are enabled: ffmpeg's hundreds of
other demuxers would find "audio" in garbage (random bytes sniff as raw AMR) and widen the
attack surface for untrusted input (playlist formats can open other files or URLs).

A plain WAV (16-bit PCM, A-law or µ-law, mono or stereo, sizes that hold) is decoded in
process: G.711 is a fixed table, identical to ffmpeg's (tested code by code), so the common
telephony file costs no ffmpeg run to decode, and none at all in ``passthrough`` storage.

The input is written to a private temporary directory (ffmpeg needs a seekable file to see
Ogg durations, MP3 gapless data and FLAC/WAV headers), removed once the call is processed.

Memory does not grow with the call.  ffprobe reads the shape first (channels, rate, announced
duration), and a file no call looks like (over 2 channels, a rate outside 8-48 kHz, longer
than the cap) is refused before a sample is decoded.  ``process`` then streams: the decoder
writes raw s16le at explicit ``-ac``/``-ar`` into a pipe, read 512 KiB at a time against a byte
budget of (cap + 1 s) of PCM; each piece is silenced, hashed and written to the encoder's
stdin (``ingest.streaming``).  Every ffmpeg run has a deadline; stderr goes to files, so no
pipe can fill and stall.  Measured on a 1-hour 48 kHz stereo Opus call (690 MB as PCM):
+22 MB peak RSS (it was 1.37 GB), ~23 s; a 4-hour 6 kbit/s bomb is refused by the probe in
0.1 s.  Two sinks still hold the whole call, by nature: ``decode`` (tests and tools, not the
worker) and WAV storage, whose output is the PCM.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal

from pydub import AudioSegment

with warnings.catch_warnings():  # G.711 tables in C; gone in 3.13, where pydub already needs audioop-lts
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from core.errors import ConfigurationError
from ingest.exceptions import (
    AudioEncodingFailed,
    AudioTooLarge,
    EmptyAudio,
    FieldError,
    InvalidRedaction,
    TruncatedAudio,
    UndecodableAudio,
)
from ingest.schema import merge_spans
from ingest.streaming import Children, Collect, Discard, PcmStream, WavWriter, read_stderr

FFMPEG, FFPROBE = "ffmpeg", "ffprobe"
StorageFormat = Literal["opus", "flac", "wav", "passthrough"]
MEDIA_TYPES: dict[str, str] = {"opus": "audio/ogg; codecs=opus", "flac": "audio/flac", "wav": "audio/wav"}
# WAV format tags decoded here without ffmpeg: what telephony sends (G.711 and 16-bit PCM).
_WAV_PCM, _WAV_ALAW, _WAV_MULAW, _WAV_EXTENSIBLE = 1, 6, 7, 0xFFFE
_WAV_CODECS = {_WAV_PCM: "pcm_s16le", _WAV_ALAW: "pcm_alaw", _WAV_MULAW: "pcm_mulaw"}  # ffmpeg's names
_WAV_SILENCE = {_WAV_PCM: b"\x00\x00", _WAV_ALAW: b"\xd5", _WAV_MULAW: b"\xff"}  # one sample of silence
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only input rates libopus takes
MAX_INPUT_BYTES = 512 * 1024 * 1024
MAX_DURATION_MS = 4 * 3600 * 1000
TRUNCATION_SLACK_MS = 250  # MP3 headers overstate by encoder delay + padding (~170 ms at 8 kHz)
WAV_SLACK_MS = 20  # a WAV's data size is exact: only a trailing partial frame may be missing
MIN_DURATION_MS = 100  # shorter is no call (a header and a few samples), whatever it claims
RATE_RANGE = (8000, 48000)  # narrowband telephony to full band; other rates are a broken header
CHUNK_BYTES = 512 * 1024  # PCM read from the decoder at a time: the bound on what a call holds
PROBE_TIMEOUT_S = 30.0
BASE_TIMEOUT_S, MIN_SPEED = 30.0, 20  # decode + encode deadline: 30 s, plus the cap at 20x real time
_DEMUXERS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "opus": "ogg", "flac": "flac"}


@dataclass(frozen=True)
class ProcessedAudio:
    """What ingest stores, and the facts the catalog records about it.

    ``content_sha256`` hashes the *redacted PCM* (s16le at ``sample_rate`` x ``channels``),
    not the encoded file: the same call gives the same hash whatever the storage format
    setting is (Opus today, FLAC tomorrow), so a replay after a settings change is still
    recognised as a duplicate.  ``source_sha256`` hashes the bytes received, the cheapest
    check for "same recording id, different audio".
    """

    data: bytes = field(repr=False)
    format: str
    media_type: str
    duration_ms: int
    channels: int
    sample_rate: int
    content_sha256: str
    source_sha256: str
    source_codec: str
    silenced: tuple[tuple[int, int], ...]


def _base() -> list[str]:
    return [FFMPEG, "-nostdin", "-hide_banner", "-nostats"]


def _run(cmd: list[str], timeout_s: float, on_timeout: Exception,
         stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, check=False, timeout=timeout_s)
    except FileNotFoundError:
        raise ConfigurationError("ffmpeg", f"{cmd[0]!r} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:  # run() has killed the child already
        raise on_timeout from None


def _timeout_s(duration_ms: float) -> float:
    """A deadline for decoding and encoding this much audio: ffmpeg at its slowest allowed speed."""
    return BASE_TIMEOUT_S + duration_ms / 1000 / MIN_SPEED


def _reason(stderr: bytes, path: str) -> str:
    """ffmpeg's last line, without our temp path, memory addresses or echoed input bytes."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    line = lines[-1] if lines else "no error output"
    line = line.replace(path, "input")
    line = re.sub(r" @ 0x[0-9a-f]+", "", line)
    line = re.sub(r"(\[\d{1,3}\])+\S*", "<bytes>", line)
    return "".join(ch if ch.isprintable() else "?" for ch in line)[:200]


def _opus_input_rate(data: bytes) -> int | None:
    """The rate an Ogg/Opus file was made from (OpusHead), so 8 kHz calls stay 8 kHz.

    Every Opus decoder outputs 48 kHz; keeping that would hold 6x the PCM for nothing.
    """
    at = data.find(b"OpusHead", 0, 4096) if data[:4] == b"OggS" else -1
    if at < 0 or len(data) < at + 16:
        return None
    rate = int.from_bytes(data[at + 12:at + 16], "little")
    return rate if rate in OPUS_RATES[:-1] else None


def wav_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, declared size, offset of its body) of each chunk of a RIFF/WAVE file, in
    order; nothing for other data. The declared size is as written (it may overrun the data)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        yield data[pos:pos + 4], size, pos + 8
        pos += 8 + size + (size & 1)


def _declared_ms(data: bytes, stderr: str) -> list[int]:
    """Lengths the file announces: ffmpeg's Duration (unless guessed from bitrate), WAV data size."""
    found = []
    match = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", stderr.split("Output #0", 1)[0])
    if match and "Estimating duration from bitrate" not in stderr:
        h, m, s = match.groups()
        found.append(round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000))
    byte_rate = 0
    for chunk, size, at in wav_chunks(data):
        if chunk == b"fmt ":
            byte_rate = int.from_bytes(data[at + 8:at + 12], "little")
        elif chunk == b"data":
            if byte_rate and size not in (0, 0xFFFFFFFF):  # 0 / -1: written by a streaming recorder
                found.append(size * 1000 // byte_rate)
            break
    return found


def _ogg_complete(data: bytes) -> bool:
    """An Ogg stream ends with a whole page flagged end-of-stream; a cut file does not."""
    at = data.rfind(b"OggS")
    if at < 0 or len(data) < at + 27:
        return False
    nsegs = data[at + 26]
    end = at + 27 + nsegs + sum(data[at + 27:at + 27 + nsegs])
    return bool(data[at + 5] & 0x04) and end <= len(data)


@dataclass(frozen=True)
class PlainWav:
    """A complete, well-formed WAV of 16-bit PCM, A-law or µ-law, mono or stereo: the common
    telephony file, decoded in process (G.711 is a fixed table) instead of by an ffmpeg run."""

    tag: int
    channels: int
    rate: int
    fmt_chunk: bytes  # the 'fmt ' chunk's body, kept for pass-through
    samples: memoryview = field(repr=False)

    @property
    def block_align(self) -> int:
        return self.channels * (2 if self.tag == _WAV_PCM else 1)

    def pcm_pieces(self, frames: int) -> Iterator[bytes]:
        """The samples as 16-bit PCM, ``frames`` at a time: never the whole call at once."""
        step = frames * self.block_align
        for at in range(0, len(self.samples), step):
            piece = self.samples[at:at + step]
            if self.tag == _WAV_MULAW:
                yield audioop.ulaw2lin(piece, 2)
            elif self.tag == _WAV_ALAW:
                yield audioop.alaw2lin(piece, 2)
            else:
                yield bytes(piece)


def plain_wav(data: bytes) -> PlainWav | None:
    """``data`` as a :class:`PlainWav`, or None when anything is unusual (other codecs, sizes
    that do not hold, a streaming recorder's placeholder sizes): ffmpeg then decodes it and
    reports what is wrong."""
    fmt = None
    for chunk, size, at in wav_chunks(data):
        if chunk == b"fmt ":
            if size < 16:
                return None
            body = data[at:at + size]
            tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAV_EXTENSIBLE and size >= 40:
                tag = int.from_bytes(body[24:26], "little")
            width = 2 if tag == _WAV_PCM else 1
            if (tag not in _WAV_CODECS or bits != 8 * width or channels not in (1, 2) or not rate
                    or align != channels * width or byte_rate != rate * align):
                return None
            fmt = (tag, channels, rate, bytes(body))
        elif chunk == b"data":
            if fmt is None or at + size > len(data) or size % (fmt[1] * (2 if fmt[0] == _WAV_PCM else 1)):
                return None
            return PlainWav(fmt[0], fmt[1], fmt[2], fmt[3], memoryview(data)[at:at + size])
    return None


def _check_rate(rate: int) -> None:
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise UndecodableAudio(f"a sample rate of {rate} Hz: calls are sampled at "
                               f"{RATE_RANGE[0]} to {RATE_RANGE[1]} Hz, so the header is wrong")


def duration_ms(segment: AudioSegment) -> int:
    """From the samples themselves, never from a header or the message."""
    return round(int(segment.frame_count()) * 1000 / segment.frame_rate)


def _pairs(spans: Iterable) -> list[tuple[int, int]]:
    pairs = [(s.start_ms, s.end_ms) if hasattr(s, "start_ms") else (int(s[0]), int(s[1])) for s in spans]
    bad = sum(1 for a, b in pairs if not 0 <= a < b)
    if bad:
        raise InvalidRedaction(f"{bad} redaction span(s) are not 0 <= start < end",
                               errors=[FieldError(("redactions",), "span_order")])
    return merge_spans(pairs)


def silence_spans(segment: AudioSegment, spans: Iterable) -> AudioSegment:
    """Digital silence over each [start_ms, end_ms) on every channel; the length is unchanged.

    ``spans`` are (start, end) pairs or objects with ``start_ms``/``end_ms``; overlaps are
    merged, and the parts past the end are ignored.  Boundaries are rounded outwards to
    whole samples: a payment span is never left a sample short.
    """
    rate, width, frames = segment.frame_rate, segment.frame_width, int(segment.frame_count())
    view, pieces, pos = memoryview(segment.raw_data), [], 0
    for start_ms, end_ms in _pairs(spans):
        first, last = start_ms * rate // 1000, min(frames, -(-end_ms * rate // 1000))
        if first >= last:
            continue
        pieces += [view[pos * width:first * width], bytes((last - first) * width)]
        pos = last
    if not pieces:
        return segment
    pieces.append(view[pos * width:])
    return segment._spawn(b"".join(pieces))


def wav_with_silence(wav: PlainWav, spans: Iterable[tuple[int, int]]) -> bytes:
    """Pass-through storage: the call's own samples in its own codec, each span overwritten with
    the codec's silence (bounds rounded outwards to whole frames, as in ``silence_spans``), in
    a minimal WAV: only the 'fmt ' and 'data' chunks, so no metadata chunk of the sender's (a
    LIST/INFO chunk may name the caller) is kept."""
    out = bytearray(wav.samples)
    align, frames = wav.block_align, len(out) // wav.block_align
    quiet = _WAV_SILENCE[wav.tag] * wav.channels
    for start_ms, end_ms in spans:
        first, last = start_ms * wav.rate // 1000, min(frames, -(-end_ms * wav.rate // 1000))
        if first < last:
            out[first * align:last * align] = quiet * (last - first)
    fmt_pad, data_pad = b"\0" * (len(wav.fmt_chunk) & 1), b"\0" * (len(out) & 1)
    riff_size = 4 + 8 + len(wav.fmt_chunk) + len(fmt_pad) + 8 + len(out) + len(data_pad)
    return b"".join([b"RIFF", riff_size.to_bytes(4, "little"), b"WAVE",
                     b"fmt ", len(wav.fmt_chunk).to_bytes(4, "little"), wav.fmt_chunk, fmt_pad,
                     b"data", len(out).to_bytes(4, "little"), out, data_pad])




# --- decoding as a stream: probe, decode, silence, hash and encode in bounded pieces --------

@dataclass(frozen=True)
class _Shape:
    """What the headers say, read by ffprobe before a single sample is decoded."""

    channels: int
    rate: int
    duration_ms: int | None


@dataclass(frozen=True)
class _Decoded:
    rate: int
    channels: int
    frames: int
    codec: str
    content_sha256: str  # of the silenced PCM: see ProcessedAudio
    stored: bytes  # whatever the sink made of the PCM

    @property
    def duration_ms(self) -> int:
        return round(self.frames * 1000 / self.rate)


class _Refused(Exception):
    """ffprobe or ffmpeg could not open or decode the input: a weak sniff, worth one retry with the hint."""

    def __init__(self, stderr: bytes, path: str) -> None:
        super().__init__("not a WAV, MP3, Ogg or FLAC file" if b"not on whitelist" in stderr
                         else f"not decodable audio: {_reason(stderr, path)}")


def _input_args(path: str, demuxer: str | None) -> list[str]:
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(sorted(set(_DEMUXERS.values()))),
            *(["-f", demuxer] if demuxer else []), "-i", path]


def _probe(path: str, demuxer: str | None, max_duration_ms: int) -> _Shape:
    """Refuse what no call looks like before decoding: a decoder's output is sized by the header."""
    cmd = [FFPROBE, "-v", "error", *_input_args(path, demuxer), "-select_streams", "a:0",
           "-show_entries", "stream=channels,sample_rate:format=duration", "-of", "json"]
    too_slow = UndecodableAudio(f"not decodable audio: probing took over {PROBE_TIMEOUT_S:g} s")
    result = _run(cmd, PROBE_TIMEOUT_S, too_slow)
    if result.returncode != 0:
        raise _Refused(result.stderr, path)
    try:
        found = json.loads(result.stdout)
        stream = found["streams"][0]
        channels, rate = int(stream.get("channels", 0)), int(stream.get("sample_rate", 0))
    except (ValueError, KeyError, IndexError, TypeError):
        raise UndecodableAudio("not decodable audio: no audio stream") from None
    if channels > 2:
        raise UndecodableAudio(f"{channels} audio channels: only mono and stereo calls are accepted")
    if channels < 1:
        raise UndecodableAudio("not decodable audio: no audio channels")
    _check_rate(rate)
    try:
        announced = round(float(found.get("format", {}).get("duration")) * 1000)
    except (TypeError, ValueError):  # "N/A" or absent: the byte budget still bounds the decoder
        announced = None
    if announced is not None and announced > max_duration_ms:
        raise AudioTooLarge(f"the audio lasts over {max_duration_ms} ms, the cap")
    return _Shape(channels, rate, announced)


def _decode_cmd(path: str, demuxer: str | None, rate: int, channels: int, max_duration_ms: int) -> list[str]:
    return [*_base(), *_input_args(path, demuxer), "-map", "0:a:0", "-map_metadata", "-1", "-c:a", "pcm_s16le",
            "-ac", str(channels), "-ar", str(rate), "-t", f"{max_duration_ms / 1000 + 1:.3f}",
            "-fflags", "+bitexact", "-f", "s16le", "pipe:1"]


def _encoder_args(fmt: str, rate: int, channels: int, bitrate: str | None) -> tuple[list[str], str]:
    if fmt == "opus":
        out_rate = next((r for r in OPUS_RATES if r >= rate), 48000)
        kbps = (16 if out_rate <= 8000 else 24) * channels
        return ["-c:a", "libopus", "-application", "voip", "-b:a", bitrate or f"{kbps}k",
                "-ar", str(out_rate), "-f", "ogg"], ".ogg"
    if fmt == "flac":
        return ["-c:a", "flac", "-compression_level", "5", "-f", "flac"], ".flac"
    raise ValueError(f"unknown storage format {fmt!r}; expected one of {sorted(MEDIA_TYPES)}")


def _encode_cmd(rate: int, channels: int, args: list[str], out_path: str) -> list[str]:
    return [*_base(), "-loglevel", "error", "-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
            *args, "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", out_path]


class _Encoder:
    """An ffmpeg encoder fed PCM on its stdin; it writes a file (FLAC rewrites its header at the end)."""

    def __init__(self, fmt: str, rate: int, channels: int, children: Children, tmp: str) -> None:
        args, suffix = _encoder_args(fmt, rate, channels, None)
        folder = tempfile.mkdtemp(dir=tmp)
        self.fmt, self.children = fmt, children
        self.out_path, self.err_path = os.path.join(folder, "output" + suffix), os.path.join(folder, "encode.log")
        with open(self.err_path, "wb") as err:
            self.proc = children.start(_encode_cmd(rate, channels, args, self.out_path), stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=err)

    def write(self, piece: bytes | bytearray) -> None:
        self.children.phase = "encode"
        try:
            self.proc.stdin.write(piece)
        except BrokenPipeError:
            self._fail()
        self.children.phase = "decode"

    def finish(self) -> bytes:
        self.children.phase = "encode"
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.wait() != 0:
            self._fail()
        with open(self.out_path, "rb") as fh:
            return fh.read()

    def _fail(self) -> None:
        self.proc.wait()  # it closed its input, so it is exiting (or the deadline kills it)
        self.children.check()
        raise AudioEncodingFailed(f"ffmpeg could not encode {self.fmt}: "
                                  f"{_reason(read_stderr(self.err_path)[1], self.out_path)}")


def _open_sink(kind: str):
    def open_sink(rate: int, channels: int, children: Children, tmp: str):
        if kind == "collect":
            return Collect()
        if kind == "discard":
            return Discard()
        if kind == "wav":
            return WavWriter(rate, channels)
        return _Encoder(kind, rate, channels, children, tmp)
    return open_sink


def _check_length(frames: int, rate: int, max_duration_ms: int) -> int:
    """The decoded call's duration, after the checks every decoded call must pass."""
    if frames == 0:
        raise EmptyAudio("the audio decodes to no samples")
    decoded = round(frames * 1000 / rate)
    if decoded < MIN_DURATION_MS:
        raise EmptyAudio(f"the audio lasts {decoded} ms: under {MIN_DURATION_MS} ms is not a call")
    if decoded > max_duration_ms:
        raise AudioTooLarge(f"the audio lasts over {max_duration_ms} ms, the cap")
    return decoded


def _check_complete(data: bytes, decoded: int, stderr: str) -> None:
    is_wav = data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    for announced in _declared_ms(data, stderr):
        slack = WAV_SLACK_MS if is_wav else max(TRUNCATION_SLACK_MS, announced // 50)
        if decoded < announced - slack:
            raise TruncatedAudio(f"the file is cut short: it announces {announced} ms but holds {decoded} ms")
    if data[:4] == b"OggS" and not _ogg_complete(data):
        raise TruncatedAudio("the Ogg stream has no final page: the file is cut short")


def _pump(proc: subprocess.Popen, pcm: PcmStream, children: Children, budget: int, max_duration_ms: int) -> None:
    """Decoder output into ``pcm``, a piece at a time, killed once it passes the byte budget."""
    read = 0
    while True:
        children.phase = "decode"
        piece = proc.stdout.read(CHUNK_BYTES)
        if not piece:
            return
        read += len(piece)
        if read > budget:  # a header that lies about the length: stop before memory or time runs out
            children.kill()
            raise AudioTooLarge(f"the audio lasts over {max_duration_ms} ms, the cap")
        pcm.feed(piece)


def _stream_file(data: bytes, path: str, demuxer: str | None, pairs: list[tuple[int, int]], sink_kind: str,
                 max_duration_ms: int, tmp: str) -> _Decoded:
    shape = _probe(path, demuxer, max_duration_ms)
    rate, channels = _opus_input_rate(data) or shape.rate, shape.channels
    err_path = os.path.join(tmp, f"decode-{demuxer or 'sniffed'}.log")
    with Children(_timeout_s(max_duration_ms)) as children:
        sink = _open_sink(sink_kind)(rate, channels, children, tmp)
        pcm = PcmStream(rate, channels, pairs, sink.write)
        with open(err_path, "wb") as err:
            proc = children.start(_decode_cmd(path, demuxer, rate, channels, max_duration_ms),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        _pump(proc, pcm, children, int((max_duration_ms / 1000 + 1) * rate * channels * 2), max_duration_ms)
        returncode = proc.wait()
        children.check()
        stderr, tail = read_stderr(err_path)
        if returncode != 0:
            raise _Refused(tail, path)
        frames = pcm.finish()
        _check_complete(data, _check_length(frames, rate, max_duration_ms), stderr)
        stored = sink.finish()
        children.check()
    codec = re.search(r"Stream #0:\d+\S*: Audio: (\w+)", stderr)
    return _Decoded(rate, channels, frames, codec.group(1) if codec else "unknown", pcm.digest.hexdigest(), stored)


_IN_PROCESS_SINKS = ("collect", "discard", "wav")  # no encoder process: nothing to time out, no scratch files


def _stream_wav(wav: PlainWav, pairs: list[tuple[int, int]], sink_kind: str, max_duration_ms: int,
                tmp: str | None) -> _Decoded:
    _check_rate(wav.rate)
    if len(wav.samples) // wav.block_align > (max_duration_ms / 1000 + 1) * wav.rate:
        raise AudioTooLarge(f"the audio lasts over {max_duration_ms} ms, the cap")
    if sink_kind in _IN_PROCESS_SINKS:  # pass-through: no deadline timer thread (the length is capped above)
        pcm, frames, stored = _pump_wav(wav, pairs, _open_sink(sink_kind)(wav.rate, wav.channels, None, tmp),
                                        max_duration_ms)
    else:
        with Children(_timeout_s(max_duration_ms)) as children:
            sink = _open_sink(sink_kind)(wav.rate, wav.channels, children, tmp)
            pcm, frames, stored = _pump_wav(wav, pairs, sink, max_duration_ms)
            children.check()
    return _Decoded(wav.rate, wav.channels, frames, _WAV_CODECS[wav.tag], pcm.digest.hexdigest(), stored)


def _pump_wav(wav: PlainWav, pairs: list[tuple[int, int]], sink, max_duration_ms: int) -> tuple[PcmStream, int, bytes]:
    pcm = PcmStream(wav.rate, wav.channels, pairs, sink.write)
    for piece in wav.pcm_pieces(CHUNK_BYTES // (2 * wav.channels)):
        pcm.feed(piece)
    frames = pcm.finish()
    _check_length(frames, wav.rate, max_duration_ms)
    return pcm, frames, sink.finish()


def _stream(data: bytes, hint: str | None, pairs: list[tuple[int, int]], sink_kind: str,
            max_duration_ms: int, wav: PlainWav | None = None) -> _Decoded:
    """Decode ``data`` (``wav``: already read as a plain WAV) to 16-bit PCM at its own rate and
    channels, silence ``pairs`` and hand the PCM to a sink piece by piece; every check of a
    decoded call on the way. A plain WAV into an in-process sink needs no scratch directory."""
    if not data:
        raise EmptyAudio("the audio is empty (0 bytes)")
    wav = wav or plain_wav(data)
    if wav is not None and sink_kind in _IN_PROCESS_SINKS:
        return _stream_wav(wav, pairs, sink_kind, max_duration_ms, None)
    with tempfile.TemporaryDirectory(prefix="callvault-audio-") as tmp:
        if wav is not None:
            return _stream_wav(wav, pairs, sink_kind, max_duration_ms, tmp)
        path = os.path.join(tmp, "input")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            return _stream_file(data, path, None, pairs, sink_kind, max_duration_ms, tmp)
        except _Refused as first:
            if hint not in _DEMUXERS:
                raise UndecodableAudio(str(first)) from None
            try:  # a weak sniff (headerless MP3): trust the hint
                return _stream_file(data, path, _DEMUXERS[hint], pairs, sink_kind, max_duration_ms, tmp)
            except _Refused:
                raise UndecodableAudio(str(first)) from None


def _decode(data: bytes, hint: str | None, max_duration_ms: int) -> tuple[AudioSegment, str]:
    decoded = _stream(data, hint, [], "collect", max_duration_ms)
    segment = AudioSegment(data=decoded.stored, sample_width=2, frame_rate=decoded.rate, channels=decoded.channels)
    return segment, decoded.codec


def decode(data: bytes, hint: str | None = None, *, max_duration_ms: int = MAX_DURATION_MS) -> AudioSegment:
    """Any supported file (PCM/µ-law/A-law WAV, MP3, Ogg/Opus, FLAC) to 16-bit PCM, channels kept.

    The whole call in memory: for tests and tools.  The worker's path is :func:`process`.
    Raises EmptyAudio, UndecodableAudio (TruncatedAudio when the file announces more than it
    holds, or an Ogg stream lacks its last page) or AudioTooLarge.
    """
    return _decode(data, hint, max_duration_ms)[0]


def normalise(segment: AudioSegment, fmt: StorageFormat = "opus", *, bitrate: str | None = None) -> bytes:
    """Encode a decoded segment for storage: Ogg/Opus (speech mode), FLAC (lossless) or WAV; channels kept.

    Opus takes only 8/12/16/24/48 kHz input, so other rates go up to the next one; the
    default bitrate is 16 kbit/s per channel for narrowband (8 kHz) calls, 24 above.
    Output is bit-exact (no random Ogg serial, no encoder version tag): the same PCM
    always gives the same bytes, the bytes :func:`process` stores.
    """
    if segment.sample_width != 2:
        segment = segment.set_sample_width(2)
    if fmt == "wav":
        out = io.BytesIO()
        segment.export(out, format="wav")
        return out.getvalue()
    args, suffix = _encoder_args(fmt, segment.frame_rate, segment.channels, bitrate)
    with tempfile.TemporaryDirectory(prefix="callvault-encode-") as tmp:
        out_path = os.path.join(tmp, "output" + suffix)  # a file: FLAC rewrites its header at the end
        timeout_s = _timeout_s(duration_ms(segment))
        result = _run(_encode_cmd(segment.frame_rate, segment.channels, args, out_path), timeout_s,
                      AudioEncodingFailed(f"ffmpeg could not encode {fmt} within {timeout_s:g} s"),
                      stdin=segment.raw_data)
        if result.returncode != 0:
            raise AudioEncodingFailed(f"ffmpeg could not encode {fmt}: {_reason(result.stderr, out_path)}")
        with open(out_path, "rb") as fh:
            return fh.read()


def process(data: bytes, hint: str | None, spans: Iterable, fmt: StorageFormat = "opus", *,
            max_bytes: int = MAX_INPUT_BYTES, max_duration_ms: int = MAX_DURATION_MS,
            pad_ms: int = 0, source_sha256: str | None = None) -> ProcessedAudio:
    """Decode, silence the redaction spans, encode for storage: the whole audio path of ingest.

    ``fmt="passthrough"`` stores a plain WAV (16-bit PCM, A-law, µ-law) as it came, with the
    spans silenced in its own codec and no ffmpeg run at all; any other input is transcoded
    to Opus.  The content hash is the same in every mode (it hashes the silenced PCM).

    A span that starts at or after the end of the audio is refused (InvalidRedaction): the
    message and the audio disagree, and storing it could keep a card number audible.  The
    end is known once the stream is decoded, so the check comes after; the encoded file is
    then dropped.  A span that only runs past the end is cut at the end.  ``pad_ms`` widens
    every span on both sides, for senders whose timeline may be offset from the decoded one
    (an MP3 without its LAME header starts ~140 ms late: encoder delay that ffmpeg cannot trim).
    ``source_sha256``: the SHA-256 of ``data`` where the caller computed it already.
    """
    if len(data) > max_bytes:
        raise AudioTooLarge(f"{len(data)} bytes is over the {max_bytes}-byte cap")
    source_sha256 = source_sha256 or hashlib.sha256(data).hexdigest()  # known: the caller hashed ``data`` already
    pairs = merge_spans((max(0, a - pad_ms), b + pad_ms) for a, b in _pairs(spans))
    wav = plain_wav(data) if fmt == "passthrough" else None
    fmt = "wav" if wav is not None else "opus" if fmt == "passthrough" else fmt
    decoded = _stream(data, hint, pairs, "discard" if wav is not None else fmt, max_duration_ms, wav)
    total = decoded.duration_ms
    outside = sum(1 for start, _ in pairs if start >= total)
    if outside:
        raise InvalidRedaction(f"{outside} redaction span(s) start after the audio ends ({total} ms)",
                               errors=[FieldError(("redactions",), "outside_audio")])
    silenced = tuple((start, min(end, total)) for start, end in pairs)
    return ProcessedAudio(
        data=wav_with_silence(wav, silenced) if wav is not None else decoded.stored, format=fmt,
        media_type=MEDIA_TYPES[fmt], duration_ms=total, channels=decoded.channels, sample_rate=decoded.rate,
        content_sha256=decoded.content_sha256, source_sha256=source_sha256, source_codec=decoded.codec,
        silenced=silenced)
