"""The lake on file:// and on s3:// (moto's server on loopback): one API, atomic writes."""

from __future__ import annotations

import pytest

from dresscode.core import lake


@pytest.fixture(params=["file", "s3"])
def any_lake(request: pytest.FixtureRequest) -> str:
    """Run each test once on the local folder and once on the S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3_lake")
    else:
        request.getfixturevalue("dresscode_home")
    return request.param


def test_bytes_round_trip_and_listing(any_lake: str) -> None:
    target = lake.partition("images", "2026-11-23") / "abc.jpg"
    lake.write_bytes(target, b"\xff\xd8jpeg")

    assert lake.read_bytes(target) == b"\xff\xd8jpeg"
    assert [p.name for p in lake.list_files(lake.table("images"))] == ["abc.jpg"]
    assert lake.root().protocol == any_lake


def test_parquet_part_rewrite_replaces_instead_of_duplicating(any_lake: str) -> None:
    lake.write_parquet("manifests", "2026-11-23", "batch-1", [{"upload": "a", "n": 1}])
    lake.write_parquet("manifests", "2026-11-23", "batch-1", [{"upload": "a", "n": 1}])
    lake.write_parquet("manifests", "2026-11-24", "batch-2", [{"upload": "b", "n": 2}])

    frame = lake.read_table("manifests").sort_values("upload")
    assert frame["upload"].tolist() == ["a", "b"]
    assert frame["date"].tolist() == ["2026-11-23", "2026-11-24"]
    assert lake.read_table("manifests", days=["2026-11-24"])["upload"].tolist() == ["b"]


def _break_transport_mid_write(fs: object, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next write die half-way, at the lowest layer each protocol has."""
    if protocol == "s3":
        real_call = fs._call_s3

        async def call_s3(method: str, *args: object, **kwargs: object) -> object:
            if method in {"put_object", "upload_part"}:
                raise ConnectionError("connection reset in the middle of the upload")
            return await real_call(method, *args, **kwargs)

        monkeypatch.setattr(fs, "_call_s3", call_s3)
    else:
        real_pipe = fs.pipe_file

        def pipe_half_then_fail(path: str, data: bytes, **kwargs: object) -> None:
            real_pipe(path, data[: len(data) // 2], **kwargs)
            raise ConnectionError("disk went away half-way through the write")

        monkeypatch.setattr(fs, "pipe_file", pipe_half_then_fail)


def test_failed_write_leaves_no_partial_object(
    any_lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = lake.partition("wardrobe_items", "2026-11-23") / "part.parquet"
    lake.write_bytes(target, b"old complete object")
    fs = target.fs

    _break_transport_mid_write(fs, any_lake, monkeypatch)
    with pytest.raises(ConnectionError):
        lake.write_bytes(target, b"new object that never fully arrives" * 100)
    monkeypatch.undo()

    assert lake.read_bytes(target) == b"old complete object"
    assert [p.name for p in lake.list_files(target.parent)] == ["part.parquet"]
    assert [k for k in fs.find(target.parent.path) if "/.tmp-" in k] == []


def test_streaming_through_open_would_leave_a_partial_object(any_lake: str) -> None:
    """Why write_bytes never streams: a writer that dies mid-way still commits on close."""
    target = lake.partition("wardrobe_items", "2026-11-23") / "streamed.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(RuntimeError), target.open("wb") as fh:
        fh.write(b"first half")
        raise RuntimeError("producer crashed")

    assert lake.read_bytes(target) == b"first half"


def test_unreadable_table_name_is_refused(any_lake: str) -> None:
    with pytest.raises(ValueError, match="Unknown lake table 'wardrobe'"):
        lake.table("wardrobe")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", ".hidden", "", "x" * 300, "evil\nname"])
def test_unsafe_segments_are_rejected(bad: str) -> None:
    with pytest.raises(lake.UnsafeKey, match="Unsafe"):
        lake.safe_segment(bad)
