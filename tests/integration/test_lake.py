"""The lake on file:// and on s3:// (moto's server on loopback): one API, atomic writes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

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


@pytest.mark.parametrize(
    "bad",
    ["../etc", "a/b", "..", ".hidden", "", "x" * 300, "evil\nname", "rt-nl\n", "u1\r\n", "\udcff"],
)
def test_unsafe_segments_are_rejected(bad: str) -> None:
    with pytest.raises(lake.UnsafeKey, match="Unsafe"):
        lake.safe_segment(bad)


def test_a_delete_only_removes_the_bytes_that_were_processed(any_lake: str) -> None:
    target = lake.landing() / "u1" / "photo.jpg"
    lake.write_bytes(target, b"first upload")
    first = hashlib.sha256(b"first upload").hexdigest()
    lake.write_bytes(target, b"second upload")  # re-uploaded after the run read it

    assert lake.delete_if_unchanged(target, first) == "changed"
    assert lake.read_bytes(target) == b"second upload"
    assert lake.delete_if_unchanged(target, None) == "changed"  # never read: never deleted
    second = hashlib.sha256(b"second upload").hexdigest()
    assert lake.delete_if_unchanged(target, second) == "deleted"
    assert not lake.exists(target)
    assert lake.delete_if_unchanged(target, second) == "missing"


def test_a_reupload_racing_the_s3_delete_is_refused_by_if_match(
    s3_lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = lake.landing() / "u1" / "photo.jpg"
    lake.write_bytes(target, b"processed")
    fs = target.fs
    real_call = fs.call_s3

    def put_then_delete(method: str, *args: object, **kwargs: object) -> object:
        if method == "delete_object":
            fs.pipe_file(target.path, b"re-uploaded between the check and the delete")
        return real_call(method, *args, **kwargs)

    monkeypatch.setattr(fs, "call_s3", put_then_delete)
    assert lake.delete_if_unchanged(target, hashlib.sha256(b"processed").hexdigest()) == "changed"
    monkeypatch.undo()
    assert lake.read_bytes(target) == b"re-uploaded between the check and the delete"


def test_a_server_without_conditional_deletes_gets_a_second_look_then_a_plain_delete(
    s3_lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    target = lake.landing() / "u1" / "photo.jpg"
    lake.write_bytes(target, b"processed")
    fs = target.fs
    real_call = fs.call_s3
    conditional = []

    def no_if_match(method: str, *args: object, **kwargs: object) -> object:
        if method == "delete_object" and "IfMatch" in kwargs:
            conditional.append(kwargs["IfMatch"])
            error = ClientError({"Error": {"Code": "NotImplemented"}}, "DeleteObject")
            raise OSError(38, "not implemented") from error
        return real_call(method, *args, **kwargs)

    monkeypatch.setattr(fs, "call_s3", no_if_match)
    assert lake.delete_if_unchanged(target, hashlib.sha256(b"processed").hexdigest()) == "deleted"
    assert len(conditional) == 1 and not lake.exists(target)


def test_listing_objects_shows_hidden_and_temp_files_with_their_age(any_lake: str) -> None:
    folder = lake.landing()
    for key in ("u1/a.jpg", "u1/.partial", "u1/.tmp-0123-b.jpg"):
        lake.write_bytes(folder / key, b"x")

    found = lake.list_objects(folder)

    assert [o.key for o in found] == ["u1/.partial", "u1/.tmp-0123-b.jpg", "u1/a.jpg"]
    assert all(o.size == 1 and abs(time.time() - o.modified) < 120 for o in found)
    assert [p.name for p in lake.list_files(folder)] == [".partial", "a.jpg"]  # tables' view


@pytest.mark.parametrize(
    "key", ["u1/photo.jpg", "u1/\udcff.jpg", "\udcc3(/p.jpg", "\x00b64:dTE=", "u1/é.jpg"]
)
def test_a_key_travels_as_utf8_and_comes_back_as_the_same_name(key: str) -> None:
    portable = lake.portable_key(key)
    assert portable.encode("utf-8") and lake.native_key(portable) == key
    undecodable = any("\udc80" <= c <= "\udcff" for c in key)
    assert (portable == key) is ("\x00" not in key and not undecodable)
    lake.printable_key(portable).encode("utf-8")


def test_a_surrogate_no_file_system_hands_out_still_travels_as_utf8() -> None:
    portable = lake.portable_key("u1/\ud800.jpg")  # a high surrogate: no file name holds it
    assert portable.encode("utf-8") and lake.printable_key(portable).encode("utf-8")


def test_a_file_open_for_writing_is_seen_as_such(dresscode_home: Path) -> None:
    target = lake.landing() / "u1" / "slow.jpg"
    Path(target.path).parent.mkdir(parents=True)
    with open(target.path, "wb") as writer:
        writer.write(b"half")
        writer.flush()
        assert lake.open_for_writing(target) in (True, None)  # None: no leases here
    assert lake.open_for_writing(target) in (False, None)


def test_the_users_a_commit_changed_are_read_from_the_log_on_both_lakes(any_lake: str) -> None:
    """``delta.changed_users`` (item_embeddings' catch-up) reads the commits' log entries and
    files through the table's own storage: the same answer on a folder and on S3."""
    from dresscode.core import delta

    lake.write_parquet("wardrobe_items", "2026-11-23", "a", [{"item_id": "a", "user_id": "u1"}])
    since = delta.current_version("wardrobe_items")
    assert since is not None
    lake.write_parquet("wardrobe_items", "2026-11-23", "b", [{"item_id": "b", "user_id": "u2"}])
    lake.write_parquet("wardrobe_items", "2026-11-23", "a", [{"item_id": "a", "user_id": "u3"}])
    assert delta.changed_users("wardrobe_items", since) == {"u2", "u3"}
    assert delta.changed_users("wardrobe_items", -1) == {"u1", "u2", "u3"}
