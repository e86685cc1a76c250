"""Tests for storage.crypto: framed AES-GCM objects and key wrapping."""

from __future__ import annotations

import ast
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CallvaultError
from storage import crypto
from storage.crypto import (
    DATA_KEY_BYTES,
    FRAME_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    WRAPPED_KEY_BYTES,
    DecryptionError,
    FrameLayout,
    decrypt_bytes,
    decrypt_range,
    decrypt_stream,
    encode_context,
    encrypt_bytes,
    encrypt_stream,
    new_data_key,
    parse_header,
    unwrap_key,
    wrap_key,
)
from storage.exceptions import UndecryptableError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = encode_context("rec-0001", "hot")
SMALL = 16  # small frames keep multi-frame tests fast


def expected_size(length: int, frame_size: int) -> int:
    frames = max(1, -(-length // frame_size))
    return HEADER_SIZE + length + TAG_SIZE * frames


def enc(pt: bytes, frame_size: int = SMALL, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    return encrypt_bytes(pt, data_key=key, aad=aad, frame_size=frame_size)


def dec(blob: bytes, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    return decrypt_bytes(blob, data_key=key, aad=aad)


def read_range(blob: bytes, start: int, end: int, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    """Do what a caller does: header, then one ranged GET of the needed frames."""
    layout = parse_header(blob[:HEADER_SIZE]).layout
    first, last = layout.frame_range_for(start, end)
    lo, hi = layout.ciphertext_span(first, last)
    return decrypt_range(
        blob[:HEADER_SIZE], blob[lo : hi + 1], first_frame=first, data_key=key, aad=aad,
        plain_start=start, plain_end_inclusive=end,
    )


# --- format and sizes -------------------------------------------------------


def test_constants_state_the_overhead():
    assert HEADER_SIZE == 25
    assert TAG_SIZE == 16
    assert FRAME_SIZE == 64 * 1024
    assert DATA_KEY_BYTES == 32 and len(new_data_key()) == 32
    assert new_data_key() != new_data_key()


@pytest.mark.parametrize("frame_size", [SMALL, FRAME_SIZE])
@pytest.mark.parametrize("factor,extra", [(0, 0), (0, 1), (1, -1), (1, 0), (1, 1), (3, 0), (3, 5)])
def test_ciphertext_length_matches_formula_and_real_output(frame_size, factor, extra):
    length = factor * frame_size + extra
    layout = FrameLayout(frame_size=frame_size, plaintext_length=length)
    blob = enc(os.urandom(length), frame_size)
    assert layout.ciphertext_length() == expected_size(length, frame_size) == len(blob)


def test_header_fields_are_what_the_format_says():
    blob = enc(b"x" * 40)
    magic, version, frame_size, length, prefix = struct.unpack(">4sBIQ8s", blob[:HEADER_SIZE])
    assert (magic, version, frame_size, length) == (b"CVE1", 1, SMALL, 40)
    header = parse_header(blob + b"trailing bytes are ignored")
    assert header.layout == FrameLayout(SMALL, 40)
    assert header.nonce_prefix == prefix and header.raw == blob[:HEADER_SIZE]


def test_frame_range_and_span_arithmetic():
    layout = FrameLayout(frame_size=10, plaintext_length=25)  # frames: 10, 10, 5
    assert layout.frame_count() == 3
    assert [layout.frame_plaintext_length(i) for i in range(3)] == [10, 10, 5]
    assert layout.frame_range_for(0, 0) == (0, 0)
    assert layout.frame_range_for(9, 10) == (0, 1)
    assert layout.frame_range_for(20, 24) == (2, 2)
    assert layout.ciphertext_span(0, 0) == (HEADER_SIZE, HEADER_SIZE + 25)
    assert layout.ciphertext_span(1, 2) == (HEADER_SIZE + 26, HEADER_SIZE + 26 + 26 + 21 - 1)
    assert layout.ciphertext_span(0, 2)[1] == layout.ciphertext_length() - 1


@pytest.mark.parametrize("start,end", [(-1, 3), (5, 4), (0, 25), (25, 25)])
def test_bad_ranges_raise_value_error(start, end):
    with pytest.raises(ValueError):
        FrameLayout(frame_size=10, plaintext_length=25).frame_range_for(start, end)


def test_empty_object_has_no_valid_range_and_bad_layouts_are_refused():
    with pytest.raises(ValueError):
        FrameLayout(10, 0).frame_range_for(0, 0)
    with pytest.raises(ValueError):
        FrameLayout(10, 25).ciphertext_span(2, 3)
    with pytest.raises(ValueError):
        FrameLayout(0, 25)


# --- round trips ------------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [0, 1, FRAME_SIZE, 3 * FRAME_SIZE, 3 * FRAME_SIZE + 123],
    ids=["empty", "one-byte", "exactly-one-frame", "exact-multiple", "partial-last-frame"],
)
def test_round_trip_default_frames(length):
    pt = os.urandom(length)
    blob = encrypt_bytes(pt, data_key=KEY, aad=AAD)
    assert dec(blob) == pt
    assert len(blob) == expected_size(length, FRAME_SIZE)


def test_ciphertext_hides_plaintext_and_is_randomised():
    pt = b"A" * (4 * SMALL)  # identical frames
    one, two = enc(pt), enc(pt)
    assert b"AAAA" not in one
    assert one != two  # fresh nonce prefix per object
    layout = FrameLayout(SMALL, len(pt))
    spans = [layout.ciphertext_span(i, i) for i in range(4)]
    bodies = {one[a : b + 1 - TAG_SIZE] for a, b in spans}  # ciphertext without tag
    assert len(bodies) == 4  # same plaintext frame, distinct nonce (keystream) per frame


# --- ranges -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    pt=st.binary(min_size=1, max_size=200),
    frame_size=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_range_read_returns_exact_slice(pt, frame_size, data):
    blob = enc(pt, frame_size)
    start = data.draw(st.integers(0, len(pt) - 1))
    end = data.draw(st.integers(start, len(pt) - 1))
    assert read_range(blob, start, end) == pt[start : end + 1]


def test_range_in_last_partial_frame_and_single_bytes():
    pt = os.urandom(5 * SMALL + 7)
    blob = enc(pt)
    assert read_range(blob, 5 * SMALL + 2, 5 * SMALL + 6) == pt[5 * SMALL + 2 :]
    for i in (0, SMALL - 1, SMALL, len(pt) - 1):
        assert read_range(blob, i, i) == pt[i : i + 1]


def test_range_read_only_authenticates_frames_it_needs():
    pt = os.urandom(4 * SMALL)
    blob = bytearray(enc(pt))
    layout = FrameLayout(SMALL, len(pt))
    lo, _ = layout.ciphertext_span(3, 3)
    blob[lo] ^= 1  # damage frame 3 only
    assert read_range(bytes(blob), 0, 2 * SMALL - 1) == pt[: 2 * SMALL]
    with pytest.raises(DecryptionError):
        read_range(bytes(blob), 3 * SMALL, 3 * SMALL)


def test_range_read_rejects_wrong_first_frame_and_short_blob():
    pt = os.urandom(3 * SMALL)
    blob = enc(pt)
    layout = FrameLayout(SMALL, len(pt))
    lo, hi = layout.ciphertext_span(1, 1)
    kwargs = dict(data_key=KEY, aad=AAD, plain_start=SMALL, plain_end_inclusive=SMALL + 3)
    with pytest.raises(ValueError):
        decrypt_range(blob[:HEADER_SIZE], blob[lo : hi + 1], first_frame=0, **kwargs)
    with pytest.raises(DecryptionError):
        decrypt_range(blob[:HEADER_SIZE], blob[lo:hi], first_frame=1, **kwargs)
    with pytest.raises(DecryptionError):
        decrypt_range(blob[:HEADER_SIZE], blob[lo : hi + 2], first_frame=1, **kwargs)
    with pytest.raises(DecryptionError):
        read_range(blob, SMALL, SMALL, aad=encode_context("rec-0002", "hot"))


# --- tampering, truncation, wrong keys --------------------------------------


@settings(max_examples=150, deadline=None)
@given(pt=st.binary(max_size=100), data=st.data())
def test_any_bit_flip_is_detected(pt, data):
    blob = bytearray(enc(pt))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecryptionError):
        dec(bytes(blob))


def test_swapped_frames_are_detected():
    pt = b"a" * SMALL + b"b" * SMALL + b"c" * 3
    blob = enc(pt)
    layout = FrameLayout(SMALL, len(pt))
    (a0, a1), (b0, b1) = layout.ciphertext_span(0, 0), layout.ciphertext_span(1, 1)
    swapped = blob[:a0] + blob[b0 : b1 + 1] + blob[a0 : a1 + 1] + blob[b1 + 1 :]
    assert len(swapped) == len(blob) and swapped != blob
    with pytest.raises(DecryptionError):
        dec(swapped)


def test_truncation_is_detected_even_if_header_is_rewritten():
    pt = os.urandom(3 * SMALL)
    blob = enc(pt)
    layout = FrameLayout(SMALL, len(pt))
    cut = blob[: layout.ciphertext_span(2, 2)[0]]  # last frame dropped
    with pytest.raises(DecryptionError):
        dec(cut)
    forged_header = blob[:9] + struct.pack(">Q", 2 * SMALL) + blob[17:HEADER_SIZE]
    forged = forged_header + cut[HEADER_SIZE:]
    assert len(forged) == FrameLayout(SMALL, 2 * SMALL).ciphertext_length()
    with pytest.raises(DecryptionError):
        dec(forged)
    with pytest.raises(DecryptionError):
        dec(blob + b"\x00")
    with pytest.raises(DecryptionError):
        dec(blob[:10])


def test_frame_spliced_from_another_object_is_detected():
    pt = os.urandom(2 * SMALL)
    one, two = enc(pt), enc(pt)
    lo, hi = FrameLayout(SMALL, len(pt)).ciphertext_span(1, 1)
    with pytest.raises(DecryptionError):
        dec(one[:lo] + two[lo : hi + 1])


@pytest.mark.parametrize("length", [0, 1, 3 * SMALL + 1])
def test_wrong_aad_and_wrong_key_are_detected(length):
    blob = enc(os.urandom(length))
    with pytest.raises(DecryptionError):
        dec(blob, aad=encode_context("rec-0001", "cold"))
    with pytest.raises(DecryptionError):
        dec(blob, key=OTHER_KEY)


def test_not_an_encrypted_object():
    with pytest.raises(DecryptionError):
        parse_header(b"RIFF" + bytes(40))
    with pytest.raises(DecryptionError):
        parse_header(b"CVE1\x02" + bytes(40))


def test_error_is_a_callvault_error_and_never_shows_keys():
    with pytest.raises(DecryptionError) as info:
        dec(enc(b"secret audio"), key=OTHER_KEY)
    err = info.value
    assert isinstance(err, UndecryptableError) and isinstance(err, CallvaultError)
    assert err.code == "undecryptable"
    text = str(err) + repr(err)
    assert "wrong key, destroyed key, or tampered object" in str(err)
    for key in (KEY, OTHER_KEY):
        assert key.hex() not in text and repr(key) not in text
    assert err.__cause__ is None and err.__suppress_context__


def test_argument_misuse_is_refused():
    with pytest.raises(ValueError):
        enc(b"x", key=KEY[:16])
    with pytest.raises(ValueError):
        enc(b"x", aad=b"")
    with pytest.raises(TypeError):
        enc(b"x", aad="rec-0001")  # type: ignore[arg-type]


# --- streaming --------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(pt=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
def test_streaming_matches_encrypt_bytes(pt, cuts):
    bounds = sorted({0, len(pt), *(c for c in cuts if c <= len(pt))})
    chunks = [pt[a:b] for a, b in zip(bounds, bounds[1:])]
    streamed = b"".join(
        encrypt_stream(chunks, plaintext_length=len(pt), data_key=KEY, aad=AAD, frame_size=SMALL)
    )
    assert len(streamed) == len(enc(pt)) == expected_size(len(pt), SMALL)
    assert dec(streamed) == pt
    pieces = [streamed[a : a + 7] for a in range(0, len(streamed), 7)]
    assert b"".join(decrypt_stream(pieces, data_key=KEY, aad=AAD)) == pt


def test_stream_encryption_is_lazy():
    consumed = []

    def source():
        for i in range(100):
            consumed.append(i)
            yield bytes([i]) * SMALL

    out = encrypt_stream(
        source(), plaintext_length=100 * SMALL, data_key=KEY, aad=AAD, frame_size=SMALL
    )
    assert len(next(out)) == HEADER_SIZE
    assert len(next(out)) == SMALL + TAG_SIZE
    assert len(consumed) <= 2  # did not read the whole plaintext to emit frame 0


def test_stream_stops_as_soon_as_input_exceeds_declared_length():
    consumed = []

    def endless():  # bounded so a regression fails instead of hanging
        for _ in range(50):
            consumed.append(1)
            yield b"z" * SMALL

    out = encrypt_stream(
        endless(), plaintext_length=2 * SMALL, data_key=KEY, aad=AAD, frame_size=SMALL
    )
    with pytest.raises(ValueError):
        list(out)
    assert len(consumed) == 3


def test_stream_length_mismatch_and_eager_validation():
    with pytest.raises(ValueError):
        list(encrypt_stream([b"abc", b"def"], plaintext_length=5, data_key=KEY, aad=AAD))
    with pytest.raises(ValueError):
        list(encrypt_stream([b"abc"], plaintext_length=5, data_key=KEY, aad=AAD))
    with pytest.raises(ValueError):
        encrypt_stream([b"abc"], plaintext_length=3, data_key=b"short", aad=AAD)  # not iterated


def test_decrypt_stream_reports_truncation_after_yielding_good_frames():
    pt = os.urandom(3 * SMALL)
    blob = enc(pt)
    out = decrypt_stream([blob[:-5]], data_key=KEY, aad=AAD)
    assert next(out) == pt[:SMALL]
    assert next(out) == pt[SMALL : 2 * SMALL]
    with pytest.raises(DecryptionError):
        next(out)
    with pytest.raises(DecryptionError):
        list(decrypt_stream([blob, b"x"], data_key=KEY, aad=AAD))


# --- key wrapping -----------------------------------------------------------

MASTER = bytes(32 * [7])
CTX = encode_context("tenant-a", "caller-1", "kek-1")


def test_wrap_unwrap_round_trip():
    data_key = new_data_key()
    wrapped = wrap_key(data_key, wrapping_key=MASTER, context=CTX)
    assert len(wrapped) == WRAPPED_KEY_BYTES == 61
    assert data_key not in wrapped
    assert wrapped != wrap_key(data_key, wrapping_key=MASTER, context=CTX)
    assert unwrap_key(wrapped, wrapping_key=MASTER, context=CTX) == data_key


def test_unwrap_with_wrong_context_key_or_tampering_fails():
    wrapped = wrap_key(KEY, wrapping_key=MASTER, context=CTX)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, wrapping_key=MASTER, context=encode_context("tenant-b", "caller-1"))
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped, wrapping_key=OTHER_KEY, context=CTX)
    for pos in (0, 5, len(wrapped) - 1):
        bad = bytearray(wrapped)
        bad[pos] ^= 1
        with pytest.raises(DecryptionError):
            unwrap_key(bytes(bad), wrapping_key=MASTER, context=CTX)
    with pytest.raises(DecryptionError):
        unwrap_key(wrapped[:-1], wrapping_key=MASTER, context=CTX)


def test_full_hierarchy_and_crypto_shredding():
    kek = new_data_key()
    wrapped_kek = wrap_key(kek, wrapping_key=MASTER, context=CTX)
    data_key = new_data_key()
    dk_ctx = encode_context("tenant-a", "rec-0001", "hot")
    wrapped_dk = wrap_key(data_key, wrapping_key=kek, context=dk_ctx)
    blob = enc(b"hello audio", key=data_key)

    kek2 = unwrap_key(wrapped_kek, wrapping_key=MASTER, context=CTX)
    data_key2 = unwrap_key(wrapped_dk, wrapping_key=kek2, context=dk_ctx)
    assert dec(blob, key=data_key2) == b"hello audio"
    # Without the (destroyed) wrapped data key, a fresh guess cannot read the object.
    with pytest.raises(DecryptionError):
        dec(blob, key=new_data_key())


def test_encode_context_is_unambiguous():
    assert encode_context("ab", "c") != encode_context("a", "bc")
    assert encode_context("a") != encode_context("a", "")
    assert encode_context("x", b"y") == encode_context(b"x", "y")
    with pytest.raises(ValueError):
        encode_context()


def test_module_imports_only_stdlib_cryptography_and_project_errors():
    tree = ast.parse(open(crypto.__file__, encoding="utf-8").read())
    modules = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    project = {m for m in modules if m.split(".")[0] in {"storage", "callvault"}}
    assert project == {"storage.exceptions"}  # pure: no object store, no settings
    allowed = {"__future__", "ctypes", "os", "struct", "dataclasses", "typing", "cryptography"}
    assert {m.split(".")[0] for m in modules - project} <= allowed


# -- whole-object decryption into one buffer (issue 20) -------------------------------------------

@settings(max_examples=150, deadline=None)
@given(pt=st.binary(max_size=200), frame_size=st.integers(1, 40), chunk=st.integers(1, 90))
def test_streamed_whole_decryption_matches_for_any_chunking(pt, frame_size, chunk):
    blob = enc(pt, frame_size)
    pieces = [blob[i:i + chunk] for i in range(0, len(blob), chunk)]
    assert crypto.decrypt_chunks_into_buffer(pieces, data_key=KEY, aad=AAD) == pt
    assert crypto.decrypt_buffer(blob, data_key=KEY, aad=AAD) == pt == dec(blob)


@settings(max_examples=60, deadline=None)
@given(pt=st.binary(max_size=3000), frame_size=st.integers(1, 700), stale=st.integers(0, 255))
def test_whole_decryption_writes_every_byte_of_its_unzeroed_buffer(pt, frame_size, stale):
    """The plaintext buffer is not zeroed first (``_new_bytearray``): memory the allocator hands
    back dirty (here: just freed buffers of the same size full of ``stale``) never shows through."""
    for _ in range(3):
        dirty = bytearray([stale]) * (len(pt) + HEADER_SIZE + 16 * (len(pt) // frame_size + 1))
        del dirty
    blob = enc(pt, frame_size)
    for _ in range(3):
        dirty = bytearray([stale]) * len(pt)
        del dirty
    assert crypto.decrypt_buffer(blob, data_key=KEY, aad=AAD) == pt
    for _ in range(3):
        dirty = bytearray([stale]) * len(pt)
        del dirty
    assert crypto.decrypt_chunks_into_buffer([blob], data_key=KEY, aad=AAD) == pt
    # encrypt_bytes' buffer is not zeroed either: a stale byte in it would fail authentication above


def test_whole_decryption_returns_its_buffer_and_bytes_where_promised():
    blob = enc(b"x" * 100)
    assert type(crypto.decrypt_buffer(blob, data_key=KEY, aad=AAD)) is bytearray
    assert type(dec(blob)) is bytes and type(enc(b"x" * 100)) is bytes


@pytest.mark.parametrize("damage", ["truncated", "extended", "flipped", "wrong key", "short header"])
def test_streamed_whole_decryption_refuses_a_damaged_object(damage):
    blob = bytearray(enc(os.urandom(100)))
    key = KEY
    if damage == "truncated":
        blob = blob[:-1]
    elif damage == "extended":
        blob += b"\0"
    elif damage == "flipped":
        blob[HEADER_SIZE + 40] ^= 1
    elif damage == "wrong key":
        key = OTHER_KEY
    else:
        blob = blob[:HEADER_SIZE - 1]
    pieces = [bytes(blob[i:i + 7]) for i in range(0, len(blob), 7)]
    with pytest.raises(DecryptionError):
        crypto.decrypt_chunks_into_buffer(pieces, data_key=key, aad=AAD)
    with pytest.raises(DecryptionError):
        crypto.decrypt_buffer(bytes(blob), data_key=key, aad=AAD)
