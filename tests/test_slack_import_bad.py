"""Bad archives: each is refused with an error naming the file and the problem, and
leaves no team (not even a half-imported, invisible one) behind."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatproject.dbrouter import on_shard
from jobs.models import TransferJob
from jobs.slack_export.importer import ImportFailed, run_import
from jobs.slack_export.reserve import start_import
from messaging.models import Channel, Message
from teams.models import Member, Team
from tests import slack_fixtures as fx

pytestmark = pytest.mark.django_db(databases="__all__")


def _refused(path: Path) -> tuple[str, TransferJob]:
    job = start_import(path, shard="shard_0")
    with pytest.raises(ImportFailed) as failure:
        run_import(job.id)
    job.refresh_from_db()
    assert job.status == "failed" and job.errors == [str(failure.value)]
    assert not Team.objects.filter(id=job.team_id).exists()
    with on_shard("shard_0"):
        for model in (Member, Channel, Message):
            assert not model.objects.filter(team_id=job.team_id).exists()
    return str(failure.value), job


def _zip_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    files = fx.export_files()
    change(files)
    return fx.write_zip(tmp_path / "bad.zip", files)


def _raw_zip(tmp_path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    path = tmp_path / "raw.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [("users.json", b"[]"), ("channels.json", b"[]"), *entries]:
            archive.writestr(name, data)
    return path


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda files: files.__setitem__(name, value)


def _unknown_user(files: dict[str, Any]) -> None:
    files["general/2017-07-14.json"][0]["user"] = "U77WHO"


def _unknown_member(files: dict[str, Any]) -> None:
    files["channels.json"][0]["members"].append("U77WHO")


def _duplicate_user(files: dict[str, Any]) -> None:
    files["users.json"].append(dict(files["users.json"][0]))


def _duplicate_channel(files: dict[str, Any]) -> None:
    files["groups.json"][0]["id"] = fx.GENERAL


def _duplicate_ts(files: dict[str, Any]) -> None:
    files["general/2017-07-15.json"].append(dict(files["general/2017-07-14.json"][0]))


def _duplicate_ts_in_one_file(files: dict[str, Any]) -> None:
    files["general/2017-07-15.json"].append(dict(files["general/2017-07-15.json"][0]))


def _message(n: int, day: int) -> dict[str, Any]:
    return {"type": "message", "ts": fx.ts(n, day), "user": fx.BOB, "text": f"message {n} of day {day}"}


def _duplicate_ts_days_apart(files: dict[str, Any]) -> None:
    # Every day newer than the one before, but for a day-0 message filed again on day 3.
    files["general/2017-07-16.json"] = [_message(1, 2)]
    files["general/2017-07-17.json"] = [_message(1, 3), dict(files["general/2017-07-14.json"][2])]


def _duplicate_ts_in_two_folders(files: dict[str, Any]) -> None:
    # A renamed channel's two folders both have the 14th: one day, read from two files.
    files["random/2017-07-14.json"] = [_message(2, 0), dict(files["chitchat/2017-07-14.json"][0])]


def _rename_general(name: str) -> Callable[[dict[str, Any]], None]:
    def rename(files: dict[str, Any]) -> None:
        files["channels.json"][0]["name"] = name

    return rename


CASES = {
    "missing users.json": (lambda f: f.pop("users.json"), "users.json: missing from the archive"),
    "missing channels.json": (lambda f: f.pop("channels.json"), "channels.json: missing from the archive"),
    "malformed JSON": (
        _set("general/2017-07-14.json", b'[{"type": "message",'),
        "general/2017-07-14.json: malformed JSON",
    ),
    "not an array": (_set("channels.json", {"a": 1}), "channels.json: expected a JSON array"),
    "non-UTF-8": (
        _set("users.json", b'[{"id": "U1", "name": "\xff"}]'),
        "users.json: not UTF-8 text (byte 0xff",
    ),
    "unknown user": (
        _unknown_user,
        "general/2017-07-14.json: message 1500000001.000001 references unknown user U77WHO",
    ),
    "unknown member": (_unknown_member, "channels.json: conversation general lists unknown member U77WHO"),
    "unknown channel folder": (
        _set("nowhere/2017-07-14.json", []),
        "nowhere/: folder matches no conversation",
    ),
    "duplicate user": (_duplicate_user, "users.json: duplicate user id U01ALICE"),
    "duplicate channel": (_duplicate_channel, "groups.json: duplicate conversation id C01GEN"),
    "duplicate ts": (_duplicate_ts, "general/2017-07-15.json: duplicate message ts 1500000001.000001"),
    "duplicate ts in one day file": (
        _duplicate_ts_in_one_file,
        "general/2017-07-15.json: duplicate message ts 1500086401.000001",
    ),
    "duplicate ts days apart": (
        _duplicate_ts_days_apart,
        "general/2017-07-17.json: duplicate message ts 1500000003.000003",
    ),
    "duplicate ts in a renamed channel's two folders": (
        _duplicate_ts_in_two_folders,
        "random/2017-07-14.json: duplicate message ts 1500000001.000001",
    ),
    "channel name escaping its folder": (
        _rename_general("../../evil"),
        "channels.json: conversation C01GEN has a name that is not a folder name: '../../evil'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_content_is_refused_with_file_and_problem(tmp_path: Path, case: str) -> None:
    change, expected = CASES[case]
    message, _job = _refused(_zip_with(tmp_path, change))
    assert expected in message


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(b"this is not a zip")
    assert "export.zip: not a zip archive" in _refused(path)[0]


def test_truncated_zip(tmp_path: Path) -> None:
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "export.zip: not a zip archive or truncated" in _refused(path)[0]


def test_damaged_member_in_zip(tmp_path: Path) -> None:
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    data = bytearray(path.read_bytes())
    offset = data.find(b"users.json") + len("users.json") + 5  # inside users.json's compressed data
    data[offset : offset + 20] = b"\x00" * 20
    path.write_bytes(bytes(data))
    assert "users.json:" in _refused(path)[0]


def test_path_traversal(tmp_path: Path) -> None:
    assert "../evil.json: path traversal" in _refused(_raw_zip(tmp_path, [("../evil.json", b"[]")]))[0]


def test_absolute_path(tmp_path: Path) -> None:
    assert "/etc/evil.json: absolute path" in _refused(_raw_zip(tmp_path, [("/etc/evil.json", b"[]")]))[0]


def test_symlink_in_zip(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("general/link.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert "general/link.json: symbolic link" in _refused(_raw_zip(tmp_path, [(link, b"/etc/passwd")]))[0]


def test_symlink_in_folder(tmp_path: Path) -> None:
    folder = fx.write_folder(tmp_path / "export", fx.export_files())
    os.symlink("/etc/passwd", folder / "general" / "2017-07-20.json")
    assert "general/2017-07-20.json: symbolic link" in _refused(folder)[0]


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    bomb = _raw_zip(tmp_path, [("general/2017-07-14.json", b"[" + b" " * 50_000_000 + b"]")])
    assert "general/2017-07-14.json: compression ratio over 200" in _refused(bomb)[0]


def test_limits_on_size_and_count(tmp_path: Path, settings: Any) -> None:
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    settings.IMPORT_MAX_FILES = 5
    assert "archive has more than 5 files" in _refused(path)[0]
    settings.IMPORT_MAX_FILES, settings.IMPORT_MAX_TOTAL_BYTES = 1000, 2000
    assert "uncompressed size is over the 2000 byte limit" in _refused(path)[0]
    settings.IMPORT_MAX_TOTAL_BYTES, settings.IMPORT_MAX_FILE_BYTES = 10**9, 1000
    assert "over the 1000 limit" in _refused(path)[0]


def test_file_count_is_checked_before_the_central_directory_is_read(tmp_path: Path, settings: Any) -> None:
    """A zip declaring a million entries is refused from its end record alone: here its
    central directory is garbage, which zipfile would only find after parsing it."""
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    start = int.from_bytes(data[end + 16 : end + 20], "little")
    data[start:end] = bytes(end - start)  # the central directory, zeroed
    path.write_bytes(bytes(data))
    settings.IMPORT_MAX_FILES = 5
    assert _refused(path)[0] == "archive has more than 5 files (14 entries)"
    settings.IMPORT_MAX_FILES = 1000  # under the limit: zipfile reads it and finds the damage
    assert "not a zip archive or truncated" in _refused(path)[0]


def test_lying_size_header_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    body = json.dumps(fx.users()).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("users.json", body)
        archive.writestr("channels.json", b"[]")
    data = path.read_bytes()
    # Claim users.json is 10 bytes in both headers; the real data is longer.
    size = len(body).to_bytes(4, "little")
    path.write_bytes(data.replace(size, (10).to_bytes(4, "little")))
    assert "users.json:" in _refused(path)[0]


def _lying_end_record(path: Path, entries: int) -> None:
    """Rewrites the end record to claim `entries` entries; the central directory stays honest."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = entries.to_bytes(2, "little") * 2  # on this disk, in total
    path.write_bytes(bytes(data))


def test_file_count_is_checked_against_the_central_directory_not_only_the_end_record(
    tmp_path: Path, settings: Any
) -> None:
    """An end record claiming one entry does not let a central directory of many through:
    folder entries (never admitted as files) would otherwise all be parsed into ZipInfos."""
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    with zipfile.ZipFile(path, "a") as archive:
        for index in range(40):
            archive.writestr(f"folder{index}/", b"")
    _lying_end_record(path, 1)
    with zipfile.ZipFile(path) as archive:  # zipfile itself reads every record
        assert len(archive.infolist()) == 54
    settings.IMPORT_MAX_FILES = 20
    assert _refused(path)[0] == "archive has more than 20 files (over 40 central directory records)"


def test_central_directory_size_is_bounded_before_it_is_read(tmp_path: Path, settings: Any) -> None:
    """Few records with huge names (or a lying size) cannot make zipfile load a big directory."""
    path = fx.write_zip(tmp_path / "export.zip", fx.export_files())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x" * 60000 + "/", b"")
    settings.IMPORT_MAX_FILES = 20
    message = _refused(path)[0]
    assert message.startswith("archive has more than 20 files (a ") and "byte central directory" in message


def test_a_file_is_parsed_item_by_item_and_a_late_problem_names_its_place(tmp_path: Path) -> None:
    """Items come as the file is read (a large users.json is never held whole); a byte
    order mark and leading space are allowed; a bad byte past the first read is placed by
    its offset in the file."""
    import codecs

    from jobs.slack_export.archive import ArchiveError, SlackArchive

    head = codecs.BOM_UTF8 + b" \n["
    body = b'{"id": "U1"},' * 10_000
    (tmp_path / "users.json").write_bytes(head + body + b'{"id": "\xff"}]')
    with SlackArchive.open(tmp_path) as archive:
        items = archive.read_list("users.json")
        assert next(items) == {"id": "U1"}
        offset = len(head) + len(body) + len(b'{"id": "')
        problem = rf"users.json: not UTF-8 text \(byte 0xff at offset {offset}\)"
        with pytest.raises(ArchiveError, match=problem):
            list(items)
