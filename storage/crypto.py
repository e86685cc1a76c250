"""Client-side envelope encryption for stored recordings (pure: no I/O).

Why client-side: the object store, its operators and anyone holding bucket
credentials only ever see ciphertext. Why envelope keys: each stored copy has its
own random data key, kept only in wrapped form (data key -> per-caller, per-tenant
KEK -> master key). Destroying a wrapped data key in the catalog "crypto-shreds"
that copy everywhere it exists, including replicas and backups we cannot reach.

Object bodies use *framed* AES-256-GCM so a byte-range read (audio seeking) fetches
and authenticates only the frames it touches. Layout, integers big-endian::

    offset  size  field
    0       4     magic b"CVE1"
    4       1     format version (1)
    5       4     frame_size        plaintext bytes per frame (last may be shorter)
    9       8     plaintext_length  total plaintext bytes
    17      8     nonce_prefix      random per object
    25      ...   frames            GCM ciphertext of each frame + 16-byte tag

    stored size = HEADER_SIZE + L + TAG_SIZE * max(1, ceil(L / frame_size))

Frame ``i`` uses nonce ``nonce_prefix || uint32(i)``: unique within an object, and
data keys are never shared between objects, so (key, nonce) never repeats. Every
frame's associated data is ``header || uint32(i) || last_flag || aad``; tampering
with the header, reordering, truncation, splicing frames from another object, or
moving the object to another identity (``aad``) all fail authentication. An empty
plaintext still gets one (empty) frame so a wrong key is detected for it too.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.exceptions import UndecryptableError

MAGIC = b"CVE1"
VERSION = 1
_HEADER = struct.Struct(">4sBIQ8s")
HEADER_SIZE = _HEADER.size  # 25
TAG_SIZE = 16
NONCE_PREFIX_BYTES = 8
DATA_KEY_BYTES = 32
FRAME_SIZE = 64 * 1024
MAX_FRAME_SIZE = 16 * 1024 * 1024
MAX_FRAMES = 2**32  # the per-frame nonce counter is 32 bits
_MAX_PLAINTEXT = 2**64 - 1
_FRAME_AAD = struct.Struct(">IB")  # frame index, last-frame flag

_WRAP_VERSION = b"\x01"
_WRAP_NONCE_BYTES = 12
_WRAP_AAD_PREFIX = b"callvault/keywrap/v1\x00"  # domain-separates from frame AAD
WRAPPED_KEY_BYTES = 1 + _WRAP_NONCE_BYTES + DATA_KEY_BYTES + TAG_SIZE  # 61


class DecryptionError(UndecryptableError):
    """Ciphertext or a wrapped key failed authentication.

    Deliberately one error for wrong key, destroyed key and tampering: telling them
    apart is impossible with AEAD and would only help an attacker. Subclasses the
    storage taxonomy's UndecryptableError (a CallvaultError, code "undecryptable")
    so callers catch one type. Messages never contain key material.
    """

    DEFAULT_MESSAGE = (
        "ciphertext could not be authenticated: wrong key, destroyed key, or tampered object"
    )

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(self.DEFAULT_MESSAGE, hint=detail)


def _new_bytearray(size: int) -> bytearray:
    """A ``bytearray`` of ``size`` bytes left as the allocator gives them, for a caller that
    writes every byte before anyone reads one (and drops the buffer on any failure).

    ``bytearray(size)`` zeroes its memory first, touching every page before the first frame is
    in: 38 ms for 64 MiB on the bench host, up front and in series with the download. Left
    untouched, each page is first touched when its frame is decrypted into it, while the next
    chunk is still on its way (``bench/NOTES.md`` §11c: the 64 MiB read went 0.70x -> 1.09x raw)."""
    if _PyByteArray_FromStringAndSize is None:
        return bytearray(size)
    return _PyByteArray_FromStringAndSize(None, size)


def _bytearray_constructor():
    """CPython's ``PyByteArray_FromStringAndSize``, which leaves the contents as allocated when
    given no source (None on an interpreter without the C API)."""
    try:
        make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except AttributeError:
        return None
    make.restype, make.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]
    return make


_PyByteArray_FromStringAndSize = _bytearray_constructor()


def new_data_key() -> bytes:
    """A fresh random AES-256 key; use one per stored copy, never reuse it."""
    return os.urandom(DATA_KEY_BYTES)


def encode_context(*parts: str | bytes) -> bytes:
    """Length-prefix each part so ``("ab", "c")`` and ``("a", "bc")`` never collide.

    Use it to build ``aad`` (recording id, tier) and wrap ``context`` (tenant, caller,
    key id) so identities cannot be confused by concatenation.
    """
    if not parts:
        raise ValueError("encode_context needs at least one part")
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


@dataclass(frozen=True)
class FrameLayout:
    """Where each frame of an encrypted object lives; pure arithmetic, no secrets."""

    frame_size: int
    plaintext_length: int
    header_size: int = HEADER_SIZE

    def __post_init__(self) -> None:
        if not 1 <= self.frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be in 1..{MAX_FRAME_SIZE}, got {self.frame_size}")
        if not 0 <= self.plaintext_length <= _MAX_PLAINTEXT:
            raise ValueError(f"plaintext_length out of range: {self.plaintext_length}")
        if self.header_size < 0:
            raise ValueError("header_size must be >= 0")
        if self.frame_count() > MAX_FRAMES:
            raise ValueError("too many frames for the 32-bit frame counter; use larger frames")

    def frame_count(self) -> int:
        """Number of frames; at least 1, so even empty objects carry a tag."""
        return max(1, -(-self.plaintext_length // self.frame_size))

    def ciphertext_length(self) -> int:
        """Total stored size: header + plaintext + one tag per frame."""
        return self.header_size + self.plaintext_length + TAG_SIZE * self.frame_count()

    def frame_plaintext_length(self, index: int) -> int:
        """Plaintext bytes in frame ``index`` (only the last one may be short)."""
        count = self.frame_count()
        if not 0 <= index < count:
            raise ValueError(f"frame index {index} outside 0..{count - 1}")
        if index < count - 1:
            return self.frame_size
        return self.plaintext_length - self.frame_size * (count - 1)

    def frame_range_for(self, plain_start: int, plain_end_inclusive: int) -> tuple[int, int]:
        """First and last frame holding plaintext bytes ``plain_start..plain_end_inclusive``."""
        if not 0 <= plain_start <= plain_end_inclusive < self.plaintext_length:
            raise ValueError(
                f"byte range {plain_start}-{plain_end_inclusive} is not within "
                f"0-{self.plaintext_length - 1}"
            )
        return plain_start // self.frame_size, plain_end_inclusive // self.frame_size

    def ciphertext_span(self, first_frame: int, last_frame: int) -> tuple[int, int]:
        """Inclusive byte offsets of frames ``first..last`` in the stored object.

        Shaped for one HTTP ``Range: bytes=start-end`` request.
        """
        if not 0 <= first_frame <= last_frame < self.frame_count():
            raise ValueError(f"frame span {first_frame}-{last_frame} is not valid")
        stride = self.frame_size + TAG_SIZE
        start = self.header_size + first_frame * stride
        end = (
            self.header_size + last_frame * stride
            + self.frame_plaintext_length(last_frame) + TAG_SIZE - 1
        )
        return start, end


class Header(NamedTuple):
    """A parsed header. Not yet authenticated: that happens when a frame decrypts."""

    layout: FrameLayout
    nonce_prefix: bytes
    raw: bytes


def parse_header(first_bytes: bytes) -> Header:
    """Parse the first ``HEADER_SIZE`` bytes (extra bytes are ignored)."""
    if len(first_bytes) < HEADER_SIZE:
        raise DecryptionError(f"object is shorter than the {HEADER_SIZE}-byte header")
    magic, version, frame_size, length, prefix = _HEADER.unpack_from(first_bytes)
    if magic != MAGIC:
        raise DecryptionError("not a callvault encrypted object (bad magic)")
    if version != VERSION:
        raise DecryptionError(f"unsupported encryption format version {version}")
    try:
        layout = FrameLayout(frame_size, length)
    except ValueError:
        raise DecryptionError("header fields are out of range") from None
    return Header(layout, prefix, bytes(first_bytes[:HEADER_SIZE]))


def _key(key: bytes, name: str) -> bytes:
    if isinstance(key, str) or not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes")
    if len(key) != DATA_KEY_BYTES:
        raise ValueError(f"{name} must be {DATA_KEY_BYTES} bytes")
    return bytes(key)


def _label(value: bytes, name: str) -> bytes:
    """aad/context must be non-empty: an empty identity binds nothing."""
    if isinstance(value, str) or not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes (see encode_context)")
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty: bind the object's identity")
    return bytes(value)


def _frame_nonce(header: Header, index: int) -> bytes:
    return header.nonce_prefix + index.to_bytes(4, "big")


def _frame_aad(header: Header, index: int, aad: bytes) -> bytes:
    last = index == header.layout.frame_count() - 1
    return header.raw + _FRAME_AAD.pack(index, last) + aad


def _open_frame(cipher: AESGCM, header: Header, index: int, aad: bytes, frame: bytes) -> bytes:
    try:
        return cipher.decrypt(_frame_nonce(header, index), frame, _frame_aad(header, index, aad))
    except InvalidTag:
        raise DecryptionError(f"frame {index} failed authentication") from None


def _open_frame_into(cipher: AESGCM, header: Header, index: int, aad: bytes, frame, out: memoryview) -> None:
    """``_open_frame`` straight into ``out`` (the frame's place in a preallocated plaintext)."""
    plain = index * header.layout.frame_size
    try:
        cipher.decrypt_into(_frame_nonce(header, index), frame, _frame_aad(header, index, aad),
                            out[plain : plain + header.layout.frame_plaintext_length(index)])
    except InvalidTag:
        raise DecryptionError(f"frame {index} failed authentication") from None


def _new_header(frame_size: int, plaintext_length: int) -> Header:
    """A fresh header (random nonce prefix) for an object of ``plaintext_length`` bytes."""
    raw = _HEADER.pack(MAGIC, VERSION, frame_size, plaintext_length, os.urandom(NONCE_PREFIX_BYTES))
    return Header(FrameLayout(frame_size, plaintext_length), raw[-NONCE_PREFIX_BYTES:], raw)


def encrypt_stream(
    chunks: Iterable[bytes],
    *,
    plaintext_length: int,
    data_key: bytes,
    aad: bytes,
    frame_size: int = FRAME_SIZE,
) -> Iterator[bytes]:
    """Encrypt chunks lazily; yields the header, then one bytes object per frame.

    ``plaintext_length`` is required up front because the header (which every
    frame authenticates) is written first and objects cannot be patched after
    upload; callers know the size of normalised audio. At most one frame is
    buffered. Arguments are validated now; a stream longer or shorter than
    declared raises ValueError during iteration, before any wrong frame is yielded
    (the caller must then abort its upload).
    """
    cipher = AESGCM(_key(data_key, "data_key"))
    aad = _label(aad, "aad")
    header = _new_header(frame_size, plaintext_length)
    layout, raw = header.layout, header.raw

    def seal(index: int, data: bytes) -> bytes:
        return cipher.encrypt(_frame_nonce(header, index), data, _frame_aad(header, index, aad))

    def generate() -> Iterator[bytes]:
        yield raw
        last = layout.frame_count() - 1
        buf, index, seen = bytearray(), 0, 0
        for chunk in chunks:
            seen += len(chunk)
            if seen > plaintext_length:
                raise ValueError(f"chunks exceed the declared plaintext_length {plaintext_length}")
            buf += chunk
            while index < last and len(buf) >= frame_size:
                yield seal(index, bytes(buf[:frame_size]))
                del buf[:frame_size]
                index += 1
        if seen != plaintext_length:
            raise ValueError(f"chunks gave {seen} bytes, declared {plaintext_length}")
        assert index == last and len(buf) == layout.frame_plaintext_length(last)
        yield seal(last, bytes(buf))

    return generate()


def encrypt_bytes(
    plaintext: bytes, *, data_key: bytes, aad: bytes, frame_size: int = FRAME_SIZE
) -> bytes:
    """Encrypt a whole plaintext in memory; same format as ``encrypt_stream``.

    Each frame is sealed straight into its place in one buffer of the known stored size
    (``AESGCM.encrypt_into``): no per-frame bytes, no join."""
    cipher, aad = AESGCM(_key(data_key, "data_key")), _label(aad, "aad")
    header = _new_header(frame_size, len(plaintext))
    layout = header.layout
    out = _new_bytearray(layout.ciphertext_length())  # the header and every frame's span: all of it written
    out[:HEADER_SIZE] = header.raw
    src, dst = memoryview(plaintext), memoryview(out)
    for index in range(layout.frame_count()):
        start, end = layout.ciphertext_span(index, index)
        plain = index * frame_size
        cipher.encrypt_into(_frame_nonce(header, index),
                            src[plain : plain + layout.frame_plaintext_length(index)],
                            _frame_aad(header, index, aad), dst[start : end + 1])
    return bytes(out)


def decrypt_buffer(blob: bytes | bytearray | memoryview, *, data_key: bytes, aad: bytes) -> bytearray:
    """Authenticate and decrypt a whole stored object into one preallocated buffer.

    The plaintext length is in the header: each frame is decrypted straight into its place
    (``AESGCM.decrypt_into``), so a 64 MiB object costs AES-GCM and nothing else. Returns the
    buffer itself (a ``bytearray``: no final copy). A frame failing authentication raises
    ``DecryptionError`` and the partly filled buffer is dropped."""
    cipher, aad = AESGCM(_key(data_key, "data_key")), _label(aad, "aad")
    header = parse_header(blob)
    layout = header.layout
    if len(blob) != layout.ciphertext_length():
        raise DecryptionError(
            f"object is {len(blob)} bytes, header says {layout.ciphertext_length()} "
            "(truncated or extended)"
        )
    out = _new_bytearray(layout.plaintext_length)  # every frame decrypted into its place, or raised
    src, dst = memoryview(blob), memoryview(out)
    for index in range(layout.frame_count()):
        start, end = layout.ciphertext_span(index, index)
        _open_frame_into(cipher, header, index, aad, src[start : end + 1], dst)
    return out


def decrypt_chunks_into_buffer(chunks: Iterable[bytes], *, data_key: bytes, aad: bytes) -> bytearray:
    """``decrypt_buffer`` of a stored object arriving in chunks (a streamed GET): each frame is
    decrypted into the preallocated plaintext as soon as its bytes are in, straight from the
    chunk when it lies within one, so the decryption overlaps the download and the ciphertext
    is never held whole. Raises like ``decrypt_buffer`` (wrong size: truncated or extended)."""
    cipher, aad = AESGCM(_key(data_key, "data_key")), _label(aad, "aad")
    it = iter(chunks)
    pending = bytearray()
    for chunk in it:
        pending += chunk
        if len(pending) >= HEADER_SIZE:
            break
    header = parse_header(pending)
    layout, stride = header.layout, header.layout.frame_size + TAG_SIZE
    out = _new_bytearray(layout.plaintext_length)  # every frame decrypted into its place, or raised
    dst = memoryview(out)
    index, count = 0, layout.frame_count()

    def open_into(frame) -> None:
        _open_frame_into(cipher, header, index, aad, frame, dst)

    def size_of(i: int) -> int:
        return stride if i < count - 1 else layout.frame_plaintext_length(i) + TAG_SIZE

    data: bytes | bytearray = bytes(pending[HEADER_SIZE:])
    pending = bytearray()
    while True:
        view, offset = memoryview(data), 0
        if pending:  # a frame split across chunks: complete it first
            need = size_of(index) - len(pending) if index < count else 0
            pending += view[:need]
            offset = min(need, len(view))
            if index < count and len(pending) == size_of(index):
                open_into(pending)
                index, pending = index + 1, bytearray()
        while index < count and len(view) - offset >= size_of(index):
            open_into(view[offset : offset + size_of(index)])
            offset, index = offset + size_of(index), index + 1
        pending += view[offset:]
        if index == count and pending:
            raise DecryptionError("object has bytes after its last frame (extended)")
        data = next(it, None)
        if data is None:
            break
    if index != count:
        raise DecryptionError(f"object truncated after frame {index - 1}")
    return out


def decrypt_bytes(blob: bytes, *, data_key: bytes, aad: bytes) -> bytes:
    """Authenticate and decrypt a whole stored object (``decrypt_buffer``, as ``bytes``)."""
    return bytes(decrypt_buffer(blob, data_key=data_key, aad=aad))


def decrypt_range(
    header_bytes: bytes,
    frames_blob: bytes,
    *,
    first_frame: int,
    data_key: bytes,
    aad: bytes,
    plain_start: int,
    plain_end_inclusive: int,
) -> bytes:
    """Return exactly ``plaintext[plain_start : plain_end_inclusive + 1]``.

    ``frames_blob`` must be the stored bytes ``ciphertext_span(first, last)`` for
    ``(first, last) = frame_range_for(plain_start, plain_end_inclusive)``, and
    ``first_frame`` must equal ``first`` (ValueError otherwise: a caller bug). Only
    those frames are authenticated; damage elsewhere in the object goes unnoticed.
    """
    cipher, aad = AESGCM(_key(data_key, "data_key")), _label(aad, "aad")
    header = parse_header(header_bytes)
    layout = header.layout
    first, last = layout.frame_range_for(plain_start, plain_end_inclusive)
    if first_frame != first:
        raise ValueError(f"byte {plain_start} is in frame {first}, not first_frame {first_frame}")
    start, end = layout.ciphertext_span(first, last)
    if len(frames_blob) != end - start + 1:
        raise DecryptionError(
            f"ranged read returned {len(frames_blob)} bytes, expected {end - start + 1} "
            "(object truncated?)"
        )
    view, out, offset = memoryview(frames_blob), bytearray(), 0
    for index in range(first, last + 1):
        size = layout.frame_plaintext_length(index) + TAG_SIZE
        out += _open_frame(cipher, header, index, aad, view[offset : offset + size])
        offset += size
    skip = plain_start - first * layout.frame_size
    return bytes(out[skip : skip + plain_end_inclusive - plain_start + 1])


def decrypt_stream(chunks: Iterable[bytes], *, data_key: bytes, aad: bytes) -> Iterator[bytes]:
    """Decrypt a stored object chunk by chunk, yielding one plaintext frame at a time.

    Every yielded frame is authentic, but the object is only known to be complete
    when iteration ends without DecryptionError; a consumer streaming to a client
    must treat that error as "abort", not "done".
    """
    cipher, aad = AESGCM(_key(data_key, "data_key")), _label(aad, "aad")

    def generate() -> Iterator[bytes]:
        buf, header, index = bytearray(), None, 0
        for chunk in chunks:
            buf += chunk
            if header is None:
                if len(buf) < HEADER_SIZE:
                    continue
                header = parse_header(buf)
                del buf[:HEADER_SIZE]
            count = header.layout.frame_count()
            while index < count:
                size = header.layout.frame_plaintext_length(index) + TAG_SIZE
                if len(buf) < size:
                    break
                yield _open_frame(cipher, header, index, aad, bytes(buf[:size]))
                del buf[:size]
                index += 1
            if index == count and buf:
                raise DecryptionError("object has bytes after its last frame")
        if header is None:
            raise DecryptionError(f"object is shorter than the {HEADER_SIZE}-byte header")
        if index != header.layout.frame_count():
            raise DecryptionError(f"object truncated after frame {index - 1}")

    return generate()


def wrap_key(key: bytes, *, wrapping_key: bytes, context: bytes) -> bytes:
    """Encrypt a 32-byte key under ``wrapping_key``, bound to ``context``.

    AES-GCM rather than RFC 3394 key wrap because GCM authenticates associated
    data: the context (tenant, caller, key id) makes a wrapped key useless if moved
    to another row. Random 96-bit nonce; fine for far fewer than 2**32 wraps per
    wrapping key. Output: version (1) || nonce (12) || ciphertext+tag (48).
    """
    key = _key(key, "key")
    cipher = AESGCM(_key(wrapping_key, "wrapping_key"))
    context = _label(context, "context")
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return _WRAP_VERSION + nonce + cipher.encrypt(nonce, key, _WRAP_AAD_PREFIX + context)


def unwrap_key(wrapped: bytes, *, wrapping_key: bytes, context: bytes) -> bytes:
    """Inverse of ``wrap_key``; DecryptionError on wrong key, context or tampering."""
    cipher = AESGCM(_key(wrapping_key, "wrapping_key"))
    context = _label(context, "context")
    if len(wrapped) != WRAPPED_KEY_BYTES or bytes(wrapped[:1]) != _WRAP_VERSION:
        raise DecryptionError("wrapped key is malformed")
    split = 1 + _WRAP_NONCE_BYTES
    nonce, sealed = bytes(wrapped[1:split]), bytes(wrapped[split:])
    try:
        return cipher.decrypt(nonce, sealed, _WRAP_AAD_PREFIX + context)
    except InvalidTag:
        raise DecryptionError("wrapped key failed: wrong wrapping key or context") from None


_SEAL_VERSION = b"\x01"
_SEAL_AAD_PREFIX = b"callvault/seal/v1\x00"  # domain-separates from key wraps and frames


def seal(value: bytes, *, key: bytes, context: bytes) -> bytes:
    """Encrypt a short value (a caller's number) under ``key``, bound to ``context``.

    Same construction as ``wrap_key`` for values of any length: version (1) || nonce (12)
    || ciphertext+tag. Whoever loses the key (erasure) loses the value with it.
    """
    cipher = AESGCM(_key(key, "key"))
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return _SEAL_VERSION + nonce + cipher.encrypt(nonce, bytes(value), _SEAL_AAD_PREFIX + _label(context, "context"))


def unseal(sealed: bytes, *, key: bytes, context: bytes) -> bytes:
    """Inverse of ``seal``; DecryptionError on wrong key, context or tampering."""
    cipher = AESGCM(_key(key, "key"))
    if len(sealed) < 1 + _WRAP_NONCE_BYTES + TAG_SIZE or bytes(sealed[:1]) != _SEAL_VERSION:
        raise DecryptionError("sealed value is malformed")
    split = 1 + _WRAP_NONCE_BYTES
    try:
        return cipher.decrypt(bytes(sealed[1:split]), bytes(sealed[split:]),
                              _SEAL_AAD_PREFIX + _label(context, "context"))
    except InvalidTag:
        raise DecryptionError("sealed value failed: wrong key or context") from None
