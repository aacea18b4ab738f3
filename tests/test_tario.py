"""The fast tar reader agrees with tarfile/webdataset and names each way a shard can be bad."""

from __future__ import annotations

import io
import tarfile

import pytest
from webdataset.tariterators import base_plus_ext, tarfile_samples

from ssltk.data.shards.reader import TarFormatError, iter_members, iter_samples, split_key


def make_tar(members, fmt=tarfile.USTAR_FORMAT, dirs=(), mtime=0):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            tar.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), mtime
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


MEMBERS = [
    ("ep0001/s000000.f000.front.jpg", b"a" * 700),
    ("ep0001/s000000.f000.left.jpg", b""),
    ("ep0001/s000000.json", b"{}"),
    ("ep0001/s000016.f000.front.jpg", b"b" * 512),
    ("ep0001/s000016.json", b"{}"),
]
LONG = "run.v2/" + "d" * 120 + "/ep0002/s000000.json"  # > 100 chars: ustar prefix / GNU / pax


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_match_tarfile(fmt):
    members = MEMBERS + ([(LONG, b"{}")] if fmt != tarfile.USTAR_FORMAT else [("x" * 90 + "/" + "y" * 90 + ".json", b"{}")])
    data = make_tar(members, fmt=fmt, dirs=["ep0001"], mtime=1.5 if fmt == tarfile.PAX_FORMAT else 0)
    assert list(iter_members(io.BytesIO(data))) == members


def test_pax_non_ascii_name():
    data = make_tar([("épisode/s000000.json", b"{}")], fmt=tarfile.PAX_FORMAT)
    assert list(iter_members(io.BytesIO(data))) == [("épisode/s000000.json", b"{}")]


@pytest.mark.parametrize("name", ["ep0001_cam0_f000001.cam1.jpg", "ep0001.cam0.f000002.jpg", "run.v2/ep/cam/f3.JPG", "noext", "a/b.c.d"])
def test_split_key_follows_webdataset(name):
    expect = base_plus_ext(name)
    got = split_key(name)
    assert got == (None if expect[0] is None else (expect[0], expect[1].lower()))


def test_samples_equal_webdataset_samples(tmp_path):
    path = tmp_path / "s.tar"
    path.write_bytes(make_tar(MEMBERS + [("__meta__/info.json", b"x"), ("ep0003/s000000.json", b"{}")]))
    ours = list(iter_samples(open(path, "rb"), str(path), errors := []))
    theirs = list(tarfile_samples(iter([{"url": str(path)}])))
    assert ours == theirs and errors == [] and len(ours) == 3  # the __meta__ folder is skipped by both


def kinds_of(data):
    errors = []
    samples = list(iter_samples(io.BytesIO(data), "mem", errors))
    return [e.kind for e in errors], [s["__key__"] for s in samples]


def test_empty_file_and_empty_archive():
    assert kinds_of(b"") == (["empty_shard"], [])
    assert kinds_of(make_tar([])) == ([], [])  # read_shards counts a tar with no samples as empty_shard


def test_not_a_tar():
    assert kinds_of(b"this is not a tar\n" * 100) == (["not_a_tar"], [])
    assert kinds_of(b"short") == (["not_a_tar"], [])


def test_truncated_inside_data_keeps_complete_samples():
    data = make_tar(MEMBERS)
    cut = data.index(b"b" * 512) + 100  # inside the second sample's first image
    assert kinds_of(data[:cut]) == (["truncated_tar"], ["ep0001/s000000"])


def test_truncated_at_a_member_boundary_is_detected():
    data = make_tar(MEMBERS)
    cut = data.index(b"b" * 512) + 512  # right after a member: tarfile would read this as a short archive
    assert kinds_of(data[:cut]) == (["truncated_tar"], ["ep0001/s000000"])


def test_truncation_after_a_complete_sample_keeps_it():
    data = make_tar(MEMBERS)
    cut = data.index(b"b" * 512) - 512 + 100  # inside the header after the first sample's json
    assert kinds_of(data[:cut]) == (["truncated_tar"], ["ep0001/s000000"])


def test_damaged_header_after_good_members():
    data = bytearray(make_tar(MEMBERS))
    pos = data.index(b"ep0001/s000016.f000")
    data[pos : pos + 6] = b"XXXXXX"  # checksum no longer matches
    assert kinds_of(bytes(data)) == (["bad_member"], ["ep0001/s000000"])


@pytest.mark.parametrize("off", [1, -1, 255, 8 * 255])
def test_a_stored_checksum_off_by_any_small_amount_is_bad(off):
    """The header check (Adler-32's byte sum, mod 65521) rejects a checksum field off by any amount
    that is not a multiple of 65521 (one damaged byte moves the sum by at most 255)."""
    data = bytearray(make_tar(MEMBERS))
    pos = data.index(b"ep0001/s000016.f000")  # the second sample's first header
    true_sum = sum(data[pos : pos + 148]) + 8 * 32 + sum(data[pos + 156 : pos + 512])
    assert int(bytes(data[pos + 148 : pos + 154]), 8) == true_sum  # tarfile wrote the real sum
    data[pos + 148 : pos + 156] = b"%06o\0 " % (true_sum + off)
    assert kinds_of(bytes(data)) == (["bad_member"], ["ep0001/s000000"])


def test_a_header_with_a_good_checksum_but_a_garbage_size_is_bad():
    """A damaged header whose sum still matches (the check is mod 65521) fails on its size field, kindly."""
    data = bytearray(make_tar(MEMBERS))
    pos = data.index(b"ep0001/s000016.f000")
    data[pos + 124 : pos + 136] = b"zz" + bytes(data[pos + 126 : pos + 136])  # not octal
    true_sum = sum(data[pos : pos + 148]) + 8 * 32 + sum(data[pos + 156 : pos + 512])
    data[pos + 148 : pos + 156] = b"%06o\0 " % true_sum  # re-sealed: the checksum passes
    assert kinds_of(bytes(data)) == (["bad_member"], ["ep0001/s000000"])


def test_a_damaged_pax_record_is_a_bad_member():
    data = bytearray(make_tar([MEMBERS[0], (LONG, b"{}")], fmt=tarfile.PAX_FORMAT))
    pos = data.index(b" path=")
    data[pos - 3 : pos] = b"x9y"  # the record's length is no longer a number
    hdr = pos - (pos % 512) - 512  # the pax member's header, re-sealed so only the record is bad
    data[hdr + 148 : hdr + 156] = b"%06o\0 " % (sum(data[hdr : hdr + 148]) + 8 * 32 + sum(data[hdr + 156 : hdr + 512]))
    assert kinds_of(bytes(data))[0] == ["bad_member"]


@pytest.mark.parametrize("record", [b"0 path=a\n", b" 0 x=1\n", b"10 path=a\n-10 x\n"])
def test_a_pax_record_that_does_not_advance_is_bad_not_a_hang(record):
    from ssltk.data.shards.reader import _pax_path

    with pytest.raises(ValueError):
        _pax_path(record)


@pytest.mark.parametrize("field", [b"-0000000003", b"+000000003", b"0_00000003"])
def test_a_size_field_with_a_sign_or_underscore_is_not_a_number(field):
    data = bytearray(make_tar(MEMBERS))
    pos = data.index(b"ep0001/s000016.f000")
    data[pos + 124 : pos + 124 + len(field)] = field
    true_sum = sum(data[pos : pos + 148]) + 8 * 32 + sum(data[pos + 156 : pos + 512])
    data[pos + 148 : pos + 156] = b"%06o\0 " % true_sum
    assert kinds_of(bytes(data)) == (["bad_member"], ["ep0001/s000000"])


def test_duplicate_field_is_dropped_and_reported():
    data = make_tar([("k.json", b"1"), ("k.json", b"2"), ("k.jpg", b"3")])
    errors = []
    samples = list(iter_samples(io.BytesIO(data), "mem", errors))
    assert samples == [{"__key__": "k", "__url__": "mem", "json": b"1", "jpg": b"3"}]
    assert [e.kind for e in errors] == ["bad_member"]


def test_error_type_carries_kind():
    with pytest.raises(TarFormatError) as info:
        list(iter_members(io.BytesIO(b"")))
    assert info.value.kind == "empty_shard"
