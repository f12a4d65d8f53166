"""IDX reader: exact bytes, every dtype, gzip or raw, and every way a file can lie."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest

from mlpspec.data.idx import DTYPE_CODES, Gunzip, encode_idx, gunzip, read_idx, read_idx_file
from mlpspec.errors import DataError


def test_header_bytes_are_exact():
    data = encode_idx(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert data == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])


def test_multibyte_values_are_big_endian():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + b"\x01\x02\xff\xfe"
    array = read_idx(data, name="x")
    assert array.tolist() == [0x0102, -2]
    assert array.dtype == np.dtype("int16") and array.dtype.isnative


@pytest.mark.parametrize("code", sorted(DTYPE_CODES))
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_round_trip_every_dtype(tmp_path, code, compress):
    dtype = DTYPE_CODES[code].newbyteorder("=")
    rng = np.random.default_rng(code)
    if dtype.kind == "f":
        array = rng.standard_normal((3, 5, 2)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 5, 2), endpoint=True, dtype=dtype)
    payload = encode_idx(array)
    assert payload[2] == code
    path = tmp_path / "file.gz"  # misleading name on purpose: detection is by magic
    path.write_bytes(gzip.compress(payload) if compress else payload)

    loaded = read_idx_file(path)

    assert loaded.dtype == dtype and loaded.dtype.isnative
    assert loaded.shape == (3, 5, 2)
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable
    assert encode_idx(loaded) == payload


def test_truncated_payload_names_file_and_sizes():
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    data = header + bytes(1000)
    with pytest.raises(DataError) as info:
        read_idx(data, name="train-images-idx3-ubyte")
    assert str(info.value) == (
        "train-images-idx3-ubyte: header declares 60000x28x28 uint8 (47040000 bytes) "
        "but only 1000 bytes follow"
    )


def test_huge_header_fails_without_allocating():
    # 10^6 x 10^6 float64 would be 8 TB; 4 x 10^6 x 10^6 x 10^6 int8 overflows int64.
    for header in (
        bytes([0, 0, 0x0E, 2]) + (10**6).to_bytes(4, "big") * 2,
        bytes([0, 0, 0x08, 3]) + (0xFFFFFFFF).to_bytes(4, "big") * 3,
    ):
        # Refused from the header alone: the peak allocation shows nothing was
        # sized from the claim (no timing here: speed belongs in benchmarks).
        tracemalloc.start()
        with pytest.raises(DataError, match="but only 10 bytes follow"):
            read_idx(header + bytes(10), name="big")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1 << 20


def test_truncated_header():
    with pytest.raises(DataError, match=r"f: IDX header declares 3 dimensions \(16 header bytes\)"):
        read_idx(bytes([0, 0, 0x08, 3, 0, 0, 0, 1]), name="f")
    with pytest.raises(DataError, match="at least 4 bytes, found 2"):
        read_idx(b"\0\0", name="f")


def test_bad_magic():
    with pytest.raises(DataError, match="f: not an IDX file: expected magic 00 00, found 50 4b"):
        read_idx(b"PK\x08\x01\0\0\0\0", name="f")


def test_unknown_dtype_code():
    with pytest.raises(DataError, match="f: unknown IDX dtype code 0x0A"):
        read_idx(bytes([0, 0, 0x0A, 1, 0, 0, 0, 0]), name="f")


@pytest.mark.parametrize("ndim", [0, 9, 255])
def test_bad_ndim(ndim):
    with pytest.raises(DataError, match=f"declares {ndim} dimensions, expected 1..8"):
        read_idx(bytes([0, 0, 0x08, ndim]) + bytes(4 * ndim), name="f")


def test_trailing_bytes():
    data = encode_idx(np.arange(5, dtype=np.uint8)) + b"xyz"
    with pytest.raises(DataError, match=r"declares 5 uint8 \(5 bytes\) but 8 bytes follow \(3 trailing bytes\)"):
        read_idx(data, name="f")


def test_empty_dimension_is_valid():
    assert read_idx(bytes([0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 7]), name="f").shape == (0, 7)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    path = tmp_path / "corrupt"
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match=f"{path}: corrupt gzip stream"):
        read_idx_file(path)


def test_truncated_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "short"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=f"{path}: gzip stream is truncated"):
        read_idx_file(path)


def test_gzip_multi_member_and_garbage():
    payload = encode_idx(np.arange(100, dtype=np.uint8))
    two = gzip.compress(payload[:50]) + gzip.compress(payload[50:])
    assert gunzip(two, name="f") == payload
    assert gunzip(two + bytes(8), name="f") == payload  # zero padding is tolerated
    with pytest.raises(DataError, match="unexpected data after the gzip stream"):
        gunzip(two + b"junk", name="f")


def test_gunzip_limit_stops_a_bomb_early():
    bomb = gzip.compress(bytes(5_000_000))
    decoder = Gunzip(name="bomb", limit=1000)
    with pytest.raises(DataError, match="more than the expected 1000 bytes"):
        decoder.feed(bomb)
    assert decoder.size <= 1001


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx_file(tmp_path / "nope")
