"""The data directory on real temp dirs: init, invite, join, file modes, corruption, merging saves."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshmeet.membership.datadir import (
    DataDir,
    create_invite,
    finish_join,
    init_commune,
    load_membership,
    load_roster,
    parse_duration,
    prepare_join,
    revoke_seat,
    save_roster,
)
from meshmeet.errors import ConfigError, MeshmeetError
from meshmeet.membership.identity import load_key
from meshmeet.membership.invite import InviteError, decode_invite
from meshmeet.membership.join import JoinServer, Joined

NOW = 1_700_000_000.0
ADDR = ["127.0.0.1:7400"]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def hq(tmp_path: Path) -> Path:
    d = tmp_path / "hq"
    s = init_commune(d, "Xã Triệu Sơn", "UBND xã", NOW)
    assert (s.short_id, s.role, s.site, s.commune_name, s.members) == (1, "hq", "UBND xã", "Xã Triệu Sơn", 1)
    return d


def test_init_layout_and_modes(hq: Path) -> None:
    d = DataDir(hq)
    assert mode(d.node_key) == 0o600 and mode(d.admin_key) == 0o600 and mode(d.roster) == 0o600
    assert d.run.is_dir() and d.config == hq / "config.toml"
    node, roster, me = load_membership(hq)
    assert me.public_key == node.public_key and me.backup and me.priority == 100
    assert roster.admin_public_key == load_key(d.admin_key).public_key
    with pytest.raises(ConfigError, match="already belongs"):
        init_commune(hq, "Xã Khác", "x", NOW)


def test_invite_then_join_on_real_dirs(hq: Path, tmp_path: Path) -> None:
    code, seat = create_invite(hq, "Thôn Xuân Tiên", "hall", parse_duration("7d"), ADDR, NOW)
    code2, seat2 = create_invite(hq, "Thôn Đông", "relay", 3600, ADDR, NOW)
    assert (seat.short_id, seat2.short_id) == (2, 3)
    assert seat.expires_at == NOW + 7 * 86400 and not seat.backup
    assert decode_invite(code).seat == seat
    assert [s.short_id for s in load_roster(hq).open_seats(NOW)] == [2, 3]

    hall = tmp_path / "hall"
    pending = prepare_join(hall, code, NOW + 60)
    assert mode(hall / "node.key") == 0o600 and pending.addresses == tuple(ADDR)
    node, roster, _ = load_membership(hq)
    server = JoinServer(roster, node, NOW + 60, NOW + 60)
    client = pending.client(os.urandom(16), NOW + 60)
    server.receive_data(client.data_to_send(), NOW + 60)
    got = client.receive_data(server.data_to_send(), NOW + 60)
    assert isinstance(got, Joined)
    save_roster(hq, roster)
    summary = finish_join(hall, pending, got.roster)
    assert (summary.short_id, summary.site, summary.role, summary.members) == (2, "Thôn Xuân Tiên", "hall", 2)
    assert mode(hall / "roster.bin") == 0o600
    hall_node, hall_roster, me = load_membership(hall)
    assert me.short_id == 2 and hall_roster.digest() == load_roster(hq).digest()
    assert not (hall / "admin.key").exists()
    with pytest.raises(ConfigError, match="already belongs"):
        prepare_join(hall, code2, NOW)
    with pytest.raises(ConfigError, match="admin key"):
        create_invite(hall, "x", "hall", 60, ADDR, NOW)


def test_join_resumes_with_the_same_key_after_a_crash(hq: Path, tmp_path: Path) -> None:
    code, _ = create_invite(hq, "Thôn A", "hall", 3600, ADDR, NOW)
    first = prepare_join(tmp_path / "h", code, NOW)
    again = prepare_join(tmp_path / "h", code, NOW)  # crashed before finish_join: same key, same claim
    assert again.node_key.public_key == first.node_key.public_key


def test_refusals_before_any_network(hq: Path, tmp_path: Path) -> None:
    code, _ = create_invite(hq, "Thôn A", "hall", 60, ADDR, NOW)
    with pytest.raises(InviteError, match="expired"):
        prepare_join(tmp_path / "late", code, NOW + 60)
    assert not (tmp_path / "late" / "node.key").exists()
    with pytest.raises(InviteError, match="damaged"):
        prepare_join(tmp_path / "typo", code[:-3] + ("AAA" if code[-3:] != "AAA" else "BBB"), NOW)
    with pytest.raises(ConfigError, match="admin key"):
        prepare_join(_with_admin_only(hq, tmp_path), code, NOW)
    with pytest.raises(ConfigError):
        create_invite(hq, "x", "mayor", 60, ADDR, NOW)
    before = load_roster(hq).digest()
    with pytest.raises(MeshmeetError, match="invalid address"):
        create_invite(hq, "x", "hall", 60, ["nonsense"], NOW)
    assert load_roster(hq).digest() == before


def _with_admin_only(hq: Path, tmp_path: Path) -> Path:
    d = tmp_path / "adm"
    d.mkdir()
    (d / "admin.key").write_bytes((hq / "admin.key").read_bytes())
    os.chmod(d / "admin.key", 0o600)
    return d


def test_corrupt_files_give_config_errors(hq: Path) -> None:
    d = DataDir(hq)
    good = d.roster.read_bytes()
    for junk in (b"", b"\x00garbage", good[:-5], good[:40] + bytes([good[40] ^ 1]) + good[41:]):
        d.roster.write_bytes(junk)
        with pytest.raises(ConfigError, match="corrupt") as err:
            load_roster(hq)
        assert err.value.vi and isinstance(err.value, MeshmeetError)
    d.roster.write_bytes(good)
    d.node_key.write_text("nothex\n")
    with pytest.raises(ConfigError, match="corrupt"):
        load_membership(hq)


def test_missing_roster_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="meshmeet init"):
        load_roster(tmp_path)


def test_save_merges_what_the_cli_wrote(hq: Path) -> None:
    """A running node saving its older in-memory roster must not drop a seat the CLI just added."""
    _, node_roster, _ = load_membership(hq)
    _, seat = create_invite(hq, "Thôn Mới", "hall", 3600, ADDR, NOW)
    assert node_roster.seat(seat.short_id) is None
    from_disk = save_roster(hq, node_roster)
    assert seat in from_disk and node_roster.seat(seat.short_id) == seat
    assert load_roster(hq).seat(seat.short_id) == seat
    assert not list(hq.glob("*.tmp"))


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("7d", "12h", "30m", "45s", "90", "2w")] == [
        604800, 43200, 1800, 45, 90, 1209600]
    for bad in ("", "7y", "-1d", "d"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_revoke_seat(hq: Path, tmp_path: Path) -> None:
    _, seat = create_invite(hq, "Thôn A", "hall", 3600, ADDR, NOW)
    revoke_seat(hq, seat.short_id, NOW)
    roster = load_roster(hq)
    assert roster.is_revoked(seat.short_id) and roster.open_seats(NOW) == []
    with pytest.raises(ConfigError, match="no seat"):
        revoke_seat(hq, 999, NOW)
    with pytest.raises(ConfigError, match="admin key"):
        revoke_seat(_with_admin_only(hq, tmp_path).parent / "nowhere", 1, NOW)


def test_a_site_is_invited_once_until_its_seat_expires_or_is_revoked(hq: Path) -> None:
    from meshmeet.membership.datadir import load_roster, revoke_seat

    _, seat = create_invite(hq, "Thôn Hạ", "hall", 60, ADDR, NOW)
    for same in ("Thôn Hạ", " thôn  HẠ ", "Tho\u0302n Hạ"):  # case, spaces, decomposed ô: the same site
        with pytest.raises(ConfigError, match=f"pending invite \\(seat #{seat.short_id}"):
            create_invite(hq, same, "hall", 60, ADDR, NOW + 1)
    with pytest.raises(ConfigError, match="already a member"):
        create_invite(hq, "UBND xã", "hq", 60, ADDR, NOW)
    assert [s.site for s in load_roster(hq).open_seats(now=NOW)] == ["Thôn Hạ"]  # nothing was written
    _, late = create_invite(hq, "Thôn Hạ", "hall", 60, ADDR, NOW + 61)  # the first one expired
    revoke_seat(hq, late.short_id, NOW + 62)
    _, again = create_invite(hq, "Thôn Hạ", "hall", 60, ADDR, NOW + 63)  # revoked: may be invited again
    assert again.short_id not in (seat.short_id, late.short_id)
