"""ingest.audio against the real ffmpeg: every telephony format, stereo kept, redaction exact."""

from __future__ import annotations

import array
import math

import pytest
from pydub import AudioSegment

from core.errors import ConfigurationError
from ingest import audio
from ingest.audio import decode, duration_ms, normalise, process, silence_spans
from ingest.exceptions import AudioTooLarge, EmptyAudio, InvalidRedaction, TruncatedAudio, UndecodableAudio
from testbed.audio import CODECS, encode, pcm_to_wav, sine_wav, tone_power, transcode

pytestmark = pytest.mark.integration

SECONDS = 3.0
LEFT, RIGHT = 440.0, 1000.0
TONE_RMS = 0.5 * 32767 / math.sqrt(2)  # a sine at half scale
SPANS = [(500, 900), (850, 1200), (2000, 2400)]  # the first two overlap
MERGED = [(500, 1200), (2000, 2400)]
HINTS = {"pcm_s16le": "wav", "pcm_u8": "wav", "mulaw": "wav", "alaw": "wav", "mp3": "mp3", "opus": "opus",
         "flac": "flac"}


@pytest.fixture(scope="module")
def sources() -> dict[tuple[str, int], bytes]:
    """Every codec in mono (440 Hz) and stereo (440 Hz left, 1000 Hz right), 3 s at 8 kHz."""
    wavs = {1: sine_wav(SECONDS, 8000, 1, (LEFT,)), 2: sine_wav(SECONDS, 8000, 2, (LEFT, RIGHT))}
    return {(codec, ch): encode(wavs[ch], codec) for codec in CODECS for ch in (1, 2)}


def channel_rms(segment: AudioSegment, start_ms: int, end_ms: int) -> list[float]:
    return [mono[start_ms:end_ms].rms for mono in segment.split_to_mono()]


def channel_samples(segment: AudioSegment, channel: int) -> array.array:
    return array.array("h", segment.split_to_mono()[channel].raw_data)


# --- decoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_decode_every_format(sources, codec: str, channels: int) -> None:
    segment = decode(sources[(codec, channels)], HINTS[codec])
    assert segment.channels == channels
    assert segment.frame_rate == 8000  # Opus too: the OpusHead rate, not the decoder's 48 kHz
    assert segment.sample_width == 2  # µ-law, A-law and 8-bit PCM are widened, not narrowed
    assert duration_ms(segment) == pytest.approx(SECONDS * 1000, abs=30)
    for rms in channel_rms(segment, 100, 2900):
        assert rms == pytest.approx(TONE_RMS, rel=0.1)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_stereo_channels_stay_distinct(sources, codec: str) -> None:
    segment = decode(sources[(codec, 2)])
    left, right = channel_samples(segment, 0)[800:8800], channel_samples(segment, 1)[800:8800]
    assert tone_power(left, 8000, LEFT) > 100 * tone_power(left, 8000, RIGHT)
    assert tone_power(right, 8000, RIGHT) > 100 * tone_power(right, 8000, LEFT)


def test_hint_is_only_a_hint(sources) -> None:
    assert duration_ms(decode(sources[("flac", 1)], "mp3")) == 3000
    assert duration_ms(decode(sources[("mulaw", 2)], None)) == 3000


def test_g711_is_decoded_at_16_bit_precision() -> None:
    original = array.array("h", sine_wav(1.0)[44:])
    for codec in ("mulaw", "alaw"):
        decoded = array.array("h", decode(encode(sine_wav(1.0), codec)).raw_data)
        assert len(decoded) == len(original)
        assert max(abs(a - b) for a, b in zip(original, decoded)) < 600  # 8-bit PCM would be off by ~128x more


@pytest.mark.parametrize("rate", [11025, 16000, 44100])
def test_other_sample_rates_keep_their_rate(rate: int) -> None:
    segment = decode(encode(sine_wav(1.0, rate, 2, (LEFT, RIGHT)), "flac"))
    assert (segment.frame_rate, segment.channels, duration_ms(segment)) == (rate, 2, 1000)


# --- bad audio -----------------------------------------------------------------------------

@pytest.mark.parametrize("blob", [b"garbage " * 500, bytes(range(256)) * 40, b"\0" * 4000, b"RIFF",
                                  b"%PDF-1.7\n" + b"x" * 3000, b"\xc8\xbf\xf3o" * 1000])
def test_garbage_is_undecodable(blob: bytes) -> None:
    with pytest.raises(UndecodableAudio) as info:
        decode(blob, "wav")
    assert info.value.code == "undecodable_audio"
    assert "/tmp" not in str(info.value) and "garbage" not in str(info.value)


def test_only_telephony_containers_are_sniffed() -> None:
    """These bytes sniff as raw AMR-NB; with every demuxer enabled they would "decode" as noise."""
    with pytest.raises(UndecodableAudio, match="not a WAV, MP3, Ogg or FLAC file"):
        decode(b"\xc8\xbf\xf3o" * 1000)


def test_empty_audio() -> None:
    with pytest.raises(EmptyAudio):
        decode(b"")
    with pytest.raises(EmptyAudio):  # a well-formed WAV with no samples
        decode(pcm_to_wav(b""))


@pytest.mark.parametrize("codec", ["pcm_s16le", "mulaw", "alaw", "flac", "mp3", "opus"])
def test_truncated_file_is_refused(sources, codec: str) -> None:
    """WAV/FLAC/MP3-with-LAME-header announce their length; an Ogg stream must end with its EOS page."""
    data = sources[(codec, 2)]
    with pytest.raises(TruncatedAudio) as info:
        decode(data[: len(data) * 6 // 10])
    assert info.value.code == "truncated_audio" and isinstance(info.value, UndecodableAudio)


def test_truncated_mp3_without_header_decodes_shorter() -> None:
    """Nothing in a bare MP3 says how long it should be: a cut one is just a shorter call."""
    data = transcode(sine_wav(SECONDS), ["-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0"], ".mp3")
    assert duration_ms(decode(data)) == pytest.approx(3000, abs=200)  # encoder delay is not trimmed
    assert duration_ms(decode(data[: len(data) // 2])) < 1700


def test_streaming_wav_header_is_not_truncation() -> None:
    """Recorders that cannot seek leave 0xFFFFFFFF as the size: decode to the end of the bytes."""
    wav = bytearray(sine_wav(SECONDS))
    wav[4:8] = wav[40:44] = b"\xff\xff\xff\xff"
    assert duration_ms(decode(bytes(wav))) == 3000


def test_too_long_and_too_big() -> None:
    data = sine_wav(SECONDS)
    with pytest.raises(AudioTooLarge):
        decode(data, max_duration_ms=1000)
    with pytest.raises(AudioTooLarge):
        process(data, "wav", [], "wav", max_bytes=len(data) - 1)
    assert duration_ms(decode(data, max_duration_ms=3000)) == 3000


def test_more_than_two_channels_is_refused() -> None:
    with pytest.raises(UndecodableAudio, match="3 audio channels"):
        decode(sine_wav(1.0, 8000, 3, (300, 500, 700)))


def test_missing_ffmpeg_is_a_configuration_error(monkeypatch, sources) -> None:
    segment = decode(sine_wav(0.2))  # a plain WAV is decoded without ffmpeg...
    monkeypatch.setattr(audio, "FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(ConfigurationError, match="ffmpeg"):
        decode(sources[("flac", 1)])  # ...any other file needs it
    with pytest.raises(ConfigurationError, match="ffmpeg"):
        normalise(segment, "opus")


# --- redaction -----------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 44100])
def test_silence_spans_is_sample_exact(rate: int) -> None:
    original = decode(sine_wav(SECONDS, rate, 2, (LEFT, RIGHT)))
    spans = [(500, 900), (850, 1201), (2999, 5000)]  # overlapping, and one past the end
    redacted = silence_spans(original, spans)
    assert len(redacted.raw_data) == len(original.raw_data)
    width = original.frame_width
    zeroed = [(500 * rate // 1000, -(-1201 * rate // 1000)), (2999 * rate // 1000, int(original.frame_count()))]
    pos = 0
    for first, last in zeroed:
        assert redacted.raw_data[pos * width:first * width] == original.raw_data[pos * width:first * width]
        assert redacted.raw_data[first * width:last * width] == bytes((last - first) * width)
        pos = last
    assert redacted.raw_data[pos * width:] == original.raw_data[pos * width:]
    assert channel_rms(redacted, 500, 1201) == [0, 0]
    assert all(r == pytest.approx(TONE_RMS, rel=0.01) for r in channel_rms(redacted, 1202, 2998))


def test_silence_without_spans_changes_nothing() -> None:
    segment = decode(sine_wav(1.0))
    assert silence_spans(segment, []) is segment
    assert silence_spans(segment, [(5000, 6000)]).raw_data == segment.raw_data


def test_bad_span_is_refused() -> None:
    with pytest.raises(InvalidRedaction):
        silence_spans(decode(sine_wav(1.0)), [(500, 400)])


@pytest.mark.parametrize("fmt", ["opus", "flac", "wav"])
@pytest.mark.parametrize("source", [("mulaw", 1), ("pcm_s16le", 2), ("opus", 2), ("mp3", 1)])
def test_redaction_survives_storage_encoding(sources, source, fmt: str) -> None:
    result = process(sources[source], None, SPANS, fmt)
    assert result.silenced == tuple(MERGED)
    assert (result.format, result.channels, result.sample_rate) == (fmt, source[1], 8000)
    assert result.duration_ms == 3000
    stored = decode(result.data, fmt)
    assert stored.channels == source[1] and duration_ms(stored) == pytest.approx(3000, abs=30)
    edge = 40  # codecs smear a few ms around a step; the inside of a span must be silent
    for start, end in MERGED:
        for rms in channel_rms(stored, start + edge, end - edge):
            assert rms < 0.01 * TONE_RMS
    for start, end in [(100, 500 - edge), (1200 + edge, 2000 - edge), (2400 + edge, 2900)]:
        for rms in channel_rms(stored, start, end):
            assert rms == pytest.approx(TONE_RMS, rel=0.15)


def test_span_after_the_end_is_refused_and_one_across_the_end_is_cut(sources) -> None:
    data = sources[("pcm_s16le", 1)]
    with pytest.raises(InvalidRedaction) as info:
        process(data, "wav", [(100, 200), (3000, 3500)], "wav")
    assert info.value.errors[0].type == "outside_audio"
    assert process(data, "wav", [(2800, 9000)], "wav").silenced == ((2800, 3000),)


def test_padding_widens_spans(sources) -> None:
    result = process(sources[("pcm_s16le", 1)], "wav", [(50, 100), (1000, 1100)], "wav", pad_ms=100)
    assert result.silenced == ((0, 200), (900, 1200))


# --- normalisation and idempotency ---------------------------------------------------------

def test_process_is_deterministic_and_hash_ignores_storage_format(sources) -> None:
    data = sources[("mulaw", 2)]
    first, again = process(data, "wav", SPANS, "opus"), process(data, "wav", SPANS, "opus")
    assert first == again  # byte-identical Opus: no random Ogg serial, no version tag
    as_flac = process(data, "wav", SPANS, "flac")
    assert as_flac.content_sha256 == first.content_sha256
    assert as_flac.source_sha256 == first.source_sha256 and as_flac.data != first.data
    assert first.source_codec == "pcm_mulaw" and first.media_type == "audio/ogg; codecs=opus"
    assert process(data, "wav", [], "opus").content_sha256 != first.content_sha256


@pytest.mark.parametrize(("rate", "stored_rate"), [(8000, 8000), (11025, 12000), (16000, 16000),
                                                   (22050, 24000), (44100, 48000)])
def test_opus_takes_the_next_rate_libopus_accepts(rate: int, stored_rate: int) -> None:
    encoded = normalise(decode(sine_wav(1.0, rate, 2, (LEFT, RIGHT))), "opus")
    back = decode(encoded)
    assert (back.frame_rate, back.channels, duration_ms(back)) == (stored_rate, 2, 1000)


def test_opus_is_small_for_narrowband_speech() -> None:
    encoded = normalise(decode(sine_wav(10.0)), "opus")
    assert len(encoded) < 10 * 16000 / 8 * 1.2  # ~16 kbit/s mono


def test_unknown_storage_format() -> None:
    with pytest.raises(ValueError):
        normalise(decode(sine_wav(0.1)), "aac")  # type: ignore[arg-type]


# --- plain WAV without ffmpeg, and pass-through storage -------------------------------------

def _every_code_wav(codec: str, channels: int) -> bytes:
    """All 256 G.711 codes, or a full-scale 16-bit ramp, as a WAV."""
    if codec in ("mulaw", "alaw"):
        return _g711_wav(bytes(range(256)) * 40, codec, channels)
    ramp = array.array("h", range(-32768, 32768, 7))
    return pcm_to_wav(ramp.tobytes()[: len(ramp.tobytes()) // (2 * channels) * 2 * channels], 8000, channels)


def _g711_wav(raw: bytes, codec: str, channels: int) -> bytes:
    tag = {"alaw": 6, "mulaw": 7}[codec]
    fmt = (tag.to_bytes(2, "little") + channels.to_bytes(2, "little") + (8000).to_bytes(4, "little")
           + (8000 * channels).to_bytes(4, "little") + channels.to_bytes(2, "little") + (8).to_bytes(2, "little")
           + (0).to_bytes(2, "little"))
    raw = raw[: len(raw) // channels * channels]
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(raw).to_bytes(4, "little") + raw
    return b"RIFF" + len(body).to_bytes(4, "little") + body


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("codec", ["mulaw", "alaw", "pcm_s16le"])
def test_plain_wav_decodes_here_exactly_as_ffmpeg_does(monkeypatch, codec: str, channels: int) -> None:
    """The in-process G.711 tables are ffmpeg's: the content hash of a call (its idempotency
    fingerprint) does not depend on which path decoded it."""
    data = _every_code_wav(codec, channels)
    assert audio.plain_wav(data) is not None
    here, here_codec = audio._decode(data, "wav", audio.MAX_DURATION_MS)
    monkeypatch.setattr(audio, "plain_wav", lambda _data: None)
    by_ffmpeg, ffmpeg_codec = audio._decode(data, "wav", audio.MAX_DURATION_MS)
    assert here_codec == ffmpeg_codec == {"mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}.get(codec, codec)
    assert (here.frame_rate, here.channels) == (by_ffmpeg.frame_rate, by_ffmpeg.channels) == (8000, channels)
    assert here.raw_data == by_ffmpeg.raw_data


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_ffmpeg_written_g711_wavs_take_the_plain_path(sources, codec: str) -> None:
    for channels in (1, 2):
        wav = audio.plain_wav(sources[(codec, channels)])
        assert wav is not None and wav.channels == channels and wav.rate == 8000


@pytest.mark.parametrize("data", [
    pytest.param(lambda s: s[("pcm_u8", 1)], id="8-bit-pcm"),
    pytest.param(lambda s: s[("mulaw", 1)][:-7], id="data-cut-short"),
    pytest.param(lambda s: s[("flac", 1)], id="not-a-wav"),
])
def test_anything_unusual_goes_to_ffmpeg(sources, data) -> None:
    assert audio.plain_wav(data(sources)) is None


@pytest.mark.parametrize("codec", ["mulaw", "alaw", "pcm_s16le"])
def test_passthrough_keeps_the_codec_and_silences_spans_in_it(sources, codec: str) -> None:
    source = sources[(codec, 2)]
    # A LIST/INFO chunk as a PBX might write, naming the caller: never stored.
    tagged = source[:12] + b"LIST" + (16).to_bytes(4, "little") + b"INFOICMT" + (4).to_bytes(4, "little") + b"0612" \
        + source[12:]
    tagged = b"RIFF" + (len(tagged) - 8).to_bytes(4, "little") + tagged[8:]
    result = process(tagged, "wav", SPANS, "passthrough")
    assert result.format == "wav" and result.media_type == "audio/wav" and result.source_codec.startswith("pcm_")
    assert [c for c, _size, _at in audio.wav_chunks(result.data)] == [b"fmt ", b"data"] and b"0612" not in result.data[:100]
    stored, original = audio.plain_wav(result.data), audio.plain_wav(source)
    assert (stored.tag, stored.channels, stored.rate) == (original.tag, 2, 8000)
    align, silence = stored.block_align, audio._WAV_SILENCE[stored.tag] * 2
    for start, end in MERGED:
        first, last = start * 8, end * 8
        assert bytes(stored.samples[first * align:last * align]) == silence * (last - first)
    untouched = [(0, 500), (1200, 2000), (2400, 3000)]
    for start, end in untouched:
        assert stored.samples[start * 8 * align:end * 8 * align] == original.samples[start * 8 * align:end * 8 * align]
    # Back through ffmpeg: the same call, silent in the spans, and the same fingerprint as Opus.
    back = decode(result.data)
    assert duration_ms(back) == 3000 and max(channel_rms(back, 550, 1150)) <= 8
    assert result.content_sha256 == process(tagged, "wav", SPANS, "opus").content_sha256


def test_passthrough_of_a_plain_wav_runs_no_process_makes_no_file_and_starts_no_thread(sources, monkeypatch) -> None:
    """Per call, the pass-through path is pure Python: no ffmpeg, no scratch directory and no deadline
    timer (they cost a pass-through call ~4 ms, bench/NOTES.md §12); the result is the one hashed."""
    expected = process(sources[("mulaw", 1)], "wav", SPANS, "passthrough")

    def refuse(*_a, **_k):
        raise AssertionError("pass-through of a plain WAV must not start a process, a thread or a scratch dir")
    for target in ("tempfile.TemporaryDirectory", "threading.Timer", "subprocess.Popen"):
        monkeypatch.setattr(target, refuse)
    result = process(sources[("mulaw", 1)], "wav", SPANS, "passthrough", source_sha256=expected.source_sha256)
    assert (result.data, result.content_sha256, result.duration_ms) == (
        expected.data, expected.content_sha256, expected.duration_ms)


def test_passthrough_transcodes_what_is_not_a_plain_wav(sources) -> None:
    result = process(sources[("mp3", 1)], "mp3", SPANS, "passthrough")
    assert result.format == "opus" and result.data[:4] == b"OggS"


# --- bounded memory: probe first, then stream ----------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
RSS_LIMIT_KB = 150 * 1024
# Run process() in a fresh interpreter: peak RSS (VmHWM) only grows, so only a new process
# measures one call.  The cwd is the repository, so this tree's ingest.audio is the one run.
_MEASURE = """
import json, sys, time
from ingest import audio
from ingest.exceptions import CallvaultError

def hwm_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

data = open(sys.argv[1], "rb").read()
spans, max_ms = json.loads(sys.argv[3]), int(sys.argv[4])
before, start, error = hwm_kb(), time.monotonic(), None
try:
    result = audio.process(data, "opus", spans, "opus", max_duration_ms=max_ms)
    open(sys.argv[2], "wb").write(result.data)
    facts = {"duration_ms": result.duration_ms, "channels": result.channels, "rate": result.sample_rate}
except CallvaultError as exc:
    error, facts = type(exc).__name__, {}
print(json.dumps({"before_kb": before, "after_kb": hwm_kb(), "seconds": time.monotonic() - start,
                  "error": error, **facts}))
"""


def _measure(source, out, spans, max_duration_ms: int) -> dict:
    import json
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(source), str(out), json.dumps(spans),
                          str(max_duration_ms)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"peak RSS {facts['before_kb'] // 1024} MB before, {facts['after_kb'] // 1024} MB after, "
          f"{facts['seconds']:.1f} s")
    return facts


def _long_opus(tmp_path_factory, name: str, seconds: int, bitrate: str):
    import subprocess
    path = tmp_path_factory.mktemp("long-audio") / name
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2",
                    "-c:a", "libopus", "-b:a", bitrate, "-compression_level", "0", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def hour_opus(tmp_path_factory):
    """A 1-hour 48 kHz stereo softphone call (~14 MB of Opus, 690 MB as PCM)."""
    return _long_opus(tmp_path_factory, "hour.ogg", 3600, "32k")


def _rms(path, start_s: float, seconds: float) -> float:
    import subprocess
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", str(start_s), "-t", str(seconds),
                          "-i", str(path), "-f", "s16le", "-ac", "2", "pipe:1"], capture_output=True, check=True).stdout
    samples = array.array("h", pcm)
    assert len(samples) > 0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def test_an_hour_of_48khz_stereo_streams_in_bounded_memory(hour_opus, tmp_path) -> None:
    out = tmp_path / "stored.ogg"
    span = (1_800_000, 1_830_000)  # half an hour in
    facts = _measure(hour_opus, out, [span], audio.MAX_DURATION_MS)
    assert facts["error"] is None
    assert facts["after_kb"] - facts["before_kb"] < RSS_LIMIT_KB
    assert facts["duration_ms"] == pytest.approx(HOUR_MS, abs=50)
    assert (facts["channels"], facts["rate"]) == (2, 48000)
    assert _rms(out, 1805, 20) < 1  # digital silence, through Opus
    assert _rms(out, 1700, 5) > 1000  # and the tone around it (lavfi's sine: RMS ~2900)


@pytest.mark.parametrize("max_duration_ms", [HOUR_MS])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path_factory, tmp_path, max_duration_ms) -> None:
    """4 hours at 6 kbit/s: ~11 MB that would decode to 2.7 GB of PCM."""
    bomb = _long_opus(tmp_path_factory, "bomb.ogg", 4 * 3600, "6k")
    facts = _measure(bomb, tmp_path / "never.ogg", [], max_duration_ms)
    assert facts["error"] == "AudioTooLarge"
    assert facts["after_kb"] - facts["before_kb"] < RSS_LIMIT_KB


def test_a_header_understating_the_length_is_stopped_while_decoding(monkeypatch) -> None:
    """The probe trusts the header; the decoder's output is capped whatever the header says."""
    probe = audio._probe
    monkeypatch.setattr(audio, "_probe", lambda path, demuxer, _max: probe(path, demuxer, 10 ** 9))
    with pytest.raises(AudioTooLarge):
        process(encode(sine_wav(3.0), "flac"), "flac", [], "opus", max_duration_ms=1000)


def test_more_than_two_channels_is_refused_by_the_probe(monkeypatch) -> None:
    six = encode(sine_wav(1.0, 8000, 6, (300, 400, 500, 600, 700, 800)), "flac")
    monkeypatch.setattr(audio, "_decode_cmd", lambda *a: pytest.fail("decoded before the probe refused"))
    with pytest.raises(UndecodableAudio, match="6 audio channels"):
        process(six, "flac", [], "opus")


def test_every_ffmpeg_run_has_a_deadline(monkeypatch, sources) -> None:
    monkeypatch.setattr(audio, "BASE_TIMEOUT_S", 0.001)
    monkeypatch.setattr(audio, "MIN_SPEED", 10 ** 9)
    with pytest.raises((UndecodableAudio, audio.AudioEncodingFailed), match="took over|within"):
        process(sources[("flac", 2)], "flac", SPANS, "opus")
    monkeypatch.setattr(audio, "PROBE_TIMEOUT_S", 0.001)
    with pytest.raises(UndecodableAudio, match="probing took over"):
        decode(sources[("flac", 2)])
