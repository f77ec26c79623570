"""Length hiding: plaintexts are padded to a few bucket sizes before encryption.

Buckets: 256-byte steps up to 4 kB (most chat lines fall in the first one), then powers of
two, and a last bucket at :data:`MAX_PADDED`. Padding is ISO/IEC 7816-4 (one 0x80 byte, then
zeros), so it is unambiguous for any plaintext; the relay sees only the bucket.
"""

from __future__ import annotations

STEP = 256  # bucket step up to SMALL_LIMIT: a chat line costs at most 255 bytes of padding
SMALL_LIMIT = 4096
# The relay refuses payloads over 64 KiB (PARLEY_MAX_MESSAGE_BYTES); 44 KiB of ciphertext is
# 60,076 base64 characters, which leaves room for the header and signature in the envelope.
MAX_PADDED = 44 * 1024
MAX_PLAINTEXT = MAX_PADDED - 1  # at least one padding byte


def _bucket_list() -> tuple[int, ...]:
    sizes = list(range(STEP, SMALL_LIMIT + 1, STEP))
    size = SMALL_LIMIT * 2
    while size < MAX_PADDED:
        sizes.append(size)
        size *= 2
    sizes.append(MAX_PADDED)
    return tuple(sizes)


BUCKETS = _bucket_list()
_BUCKET_SET = frozenset(BUCKETS)


def bucket(length: int) -> int:
    """The padded size for a plaintext of ``length`` bytes."""
    if not 0 <= length <= MAX_PLAINTEXT:
        raise ValueError(f"plaintext must be at most {MAX_PLAINTEXT} bytes")
    return next(size for size in BUCKETS if size > length)


def pad(plaintext: bytes) -> bytes:
    """``plaintext || 0x80 || 0x00...`` up to its bucket size."""
    size = bucket(len(plaintext))
    return plaintext + b"\x80" + bytes(size - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    """Inverse of :func:`pad`; ValueError for a non-bucket length or bad padding."""
    if len(padded) not in _BUCKET_SET:
        raise ValueError("padded length is not a bucket size")
    body = padded.rstrip(b"\x00")
    if not body.endswith(b"\x80"):
        raise ValueError("bad padding")
    return body[:-1]
