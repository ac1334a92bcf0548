"""The node's data directory: its layout, and crash-safe reads and writes of keys and roster.

    DIR/node.key     this node's Ed25519 seed (0600)
    DIR/admin.key    the commune admin key (0600, HQ only)
    DIR/roster.bin   the roster (Roster.to_bytes), replaced atomically (tmp + fsync + rename)
    DIR/roster.lock  flock taken while roster.bin is read-merged-written
    DIR/config.toml  written by meshmeet.config (only its path is known here)
    DIR/run/         runtime files of the running node

Also the membership commands' file work: init a commune, create an invite, prepare and finish a
join. Saving a roster first merges what is on disk (rosters only grow), so the CLI and a running
node can both write it without losing entries. This module must never open a network connection,
never overwrite a key, and never let a corrupt file escape as anything but a ConfigError.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError
from .identity import KeyPair, load_key, save_key
from .invite import Invite, InviteError, decode_invite, encode_invite, make_invite
from .join import JoinClient
from .site_seats import refuse_second_invite
from .roster import (
    ROLES,
    Entry,
    Member,
    Roster,
    Revocation,
    RosterError,
    Seat,
    make_claim,
    make_header,
    make_revocation,
    make_seat,
)

DEFAULT_INVITE_EXPIRES_S = 7 * 24 * 3600
HQ_SHORT_ID = 1
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class DataDir:
    """The paths inside one data directory."""

    root: Path

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def roster(self) -> Path:
        return self.root / "roster.bin"

    @property
    def roster_lock(self) -> Path:
        return self.root / "roster.lock"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def run(self) -> Path:
        return self.root / "run"


@dataclass(frozen=True)
class MembershipSummary:
    """What init or join produced, for the CLI to print."""

    commune_id: str  # hex
    commune_name: str | None
    node_id: str
    short_id: int
    site: str
    role: str
    members: int


@dataclass(frozen=True)
class PendingJoin:
    """A validated invite and this node's (already saved) key, waiting for a member's answer."""

    data_dir: Path
    invite: Invite
    node_key: KeyPair

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.invite.addresses

    def client(self, nonce: bytes, now: float) -> JoinClient:
        """A fresh sans-IO client for one attempt (one per address tried)."""
        return JoinClient(self.invite, self.node_key, nonce, now)


def parse_duration(text: str) -> int:
    """Seconds from "7d", "12h", "30m", "45s" or plain seconds; ConfigError otherwise."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw]?)\s*", text or "")
    if not m:
        raise ConfigError(f"Thời hạn không hợp lệ: {text!r} (ví dụ 7d, 12h)", f"invalid duration {text!r} (e.g. 7d, 12h)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * unit


# ---------------------------------------------------------------- roster file


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextmanager
def _roster_locked(d: DataDir) -> Iterator[None]:
    fd = os.open(d.roster_lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_roster(d: DataDir) -> Roster | None:
    try:
        data = d.roster.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"Không đọc được {d.roster}: {e.strerror}", f"cannot read {d.roster}: {e.strerror}") from None
    try:
        return Roster.from_bytes(data)
    except RosterError:
        raise ConfigError(
            f"Tệp danh sách thành viên {d.roster} bị hỏng; chép lại từ máy khác hoặc gia nhập lại",
            f"roster file {d.roster} is corrupt; copy it from another node or join again",
        ) from None


def load_roster(data_dir: Path) -> Roster:
    """The roster on disk; ConfigError when missing or corrupt."""
    d = DataDir(Path(data_dir))
    roster = _read_roster(d)
    if roster is None:
        raise ConfigError(
            f"Thư mục {d.root} chưa thuộc xã nào; chạy 'meshmeet init' hoặc 'meshmeet join'",
            f"{d.root} belongs to no commune yet; run 'meshmeet init' or 'meshmeet join'",
        )
    return roster


def save_roster(data_dir: Path, roster: Roster) -> list[Entry]:
    """Merge roster.bin into `roster` (union), then write the union atomically.

    Returns the entries that came from disk and were new to `roster` (the running node should
    gossip them: e.g. a seat the CLI just created).
    """
    d = DataDir(Path(data_dir))
    d.root.mkdir(parents=True, exist_ok=True)
    with _roster_locked(d):
        on_disk = _read_roster(d)
        from_disk: list[Entry] = []
        if on_disk is not None:
            if on_disk.admin_public_key != roster.admin_public_key:
                raise ConfigError(
                    f"{d.roster} thuộc xã khác; không ghi đè",
                    f"{d.roster} belongs to another commune; not overwriting it",
                )
            from_disk = roster.merge(on_disk.entries())
            if on_disk.digest() == roster.digest():
                return from_disk
        _write_atomic(d.roster, roster.to_bytes())
        return from_disk


# ---------------------------------------------------------------- commands


def _refuse_if_member(d: DataDir) -> None:
    roster = _read_roster(d)
    if roster is not None:
        name = roster.commune_name or roster.commune_id.hex()
        raise ConfigError(
            f"Thư mục {d.root} đã thuộc xã {name}; dùng thư mục khác",
            f"{d.root} already belongs to commune {name}; use another data directory",
        )


def _summary(roster: Roster, node_key: KeyPair) -> MembershipSummary:
    me = roster.member_by_public_key(node_key.public_key)
    if me is None:
        raise ConfigError(
            "Máy này không có trong danh sách thành viên", "this node is not on the commune roster"
        )
    return MembershipSummary(
        roster.commune_id.hex(), roster.commune_name, me.node_id, me.short_id, me.site, me.role, len(roster.members())
    )


def init_commune(data_dir: Path, commune_name: str, site: str, now: float) -> MembershipSummary:
    """Create the commune (admin key, header) and this node as its HQ (seat 1 + claim).

    Resumes a run that crashed before roster.bin was written (reuses the keys it saved).
    """
    d = DataDir(Path(data_dir))
    _refuse_if_member(d)
    if d.node_key.exists() and not d.admin_key.exists():
        raise ConfigError(
            f"Thư mục {d.root} đang dở việc gia nhập xã khác", f"{d.root} holds a node key from an unfinished join"
        )
    d.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    (d.run).mkdir(mode=DIR_MODE, exist_ok=True)
    admin = load_key(d.admin_key) if d.admin_key.exists() else _new_key(d.admin_key)
    node = load_key(d.node_key) if d.node_key.exists() else _new_key(d.node_key)
    enrol = KeyPair.generate()  # used once, right here, then forgotten
    try:
        header = make_header(admin, commune_name, int(now))
        seat = make_seat(
            admin,
            short_id=HQ_SHORT_ID,
            site=site,
            role="hq",
            enrolment_public_key=enrol.public_key,
            expires_at=int(now),
            issued_at=int(now),
        )
    except RosterError as e:
        raise ConfigError(f"Tên xã hoặc điểm không hợp lệ: {e.vi}", f"invalid commune or site name: {e.en}") from None
    roster = Roster(admin.public_key)
    for entry in (header, seat, make_claim(enrol, node, roster.commune_id, HQ_SHORT_ID)):
        roster.add(entry)
    save_roster(d.root, roster)
    return _summary(roster, node)


def _new_key(path: Path) -> KeyPair:
    key = KeyPair.generate()
    save_key(path, key)
    return key


def create_invite(
    data_dir: Path,
    site: str,
    role: str,
    expires_s: int,
    addresses: list[str],
    now: float,
    *,
    priority: int | None = None,
    backup: bool | None = None,
) -> tuple[str, Seat]:
    """Sign a new seat, add it to roster.bin, and return (invite code, seat). Needs admin.key."""
    d = DataDir(Path(data_dir))
    if not d.admin_key.exists():
        raise ConfigError(
            "Máy này không giữ khóa quản trị của xã; hãy tạo mã mời trên máy ở trụ sở (HQ)",
            "this node does not hold the commune admin key; create invites on the HQ node",
        )
    if role not in ROLES:
        raise ConfigError(f"Vai trò không hợp lệ: {role} (hq, hall, relay)", f"unknown role {role} (hq, hall, relay)")
    if expires_s <= 0:
        raise ConfigError("Thời hạn mã mời phải dương", "invite expiry must be positive")
    admin = load_key(d.admin_key)
    enrol = KeyPair.generate()
    with _roster_locked(d):  # hold the lock so two invites never get the same short id
        roster = load_roster(d.root)
        if roster.admin_public_key != admin.public_key:
            raise ConfigError(f"{d.admin_key} không khớp danh sách thành viên", f"{d.admin_key} does not match the roster")
        refuse_second_invite(roster, site, now)
        try:
            seat = make_seat(
                admin,
                short_id=roster.next_short_id(),
                site=site,
                role=role,
                enrolment_public_key=enrol.public_key,
                expires_at=int(now + expires_s),
                issued_at=int(now),
                priority=priority,
                backup=backup,
            )
            invite = make_invite(admin.public_key, seat, enrol, list(addresses))
        except RosterError as e:
            raise ConfigError(e.vi, e.en) from None
        roster.add(seat)
        _write_atomic(d.roster, roster.to_bytes())
    return encode_invite(invite), seat


def revoke_seat(data_dir: Path, short_id: int, now: float) -> Revocation:
    """Withdraw a seat (and the node on it) from the commune; needs admin.key. Gossip spreads it."""
    d = DataDir(Path(data_dir))
    if not d.admin_key.exists():
        raise ConfigError(
            "Máy này không giữ khóa quản trị của xã; hãy thu hồi trên máy ở trụ sở (HQ)",
            "this node does not hold the commune admin key; revoke seats on the HQ node",
        )
    admin = load_key(d.admin_key)
    with _roster_locked(d):
        roster = load_roster(d.root)
        if roster.seat(short_id) is None:
            raise ConfigError(f"Không có chỗ số {short_id}", f"there is no seat {short_id}")
        if roster.admin_public_key != admin.public_key:
            raise ConfigError(f"{d.admin_key} không khớp danh sách thành viên", f"{d.admin_key} does not match the roster")
        revocation = make_revocation(admin, short_id, int(now))
        roster.add(revocation)
        _write_atomic(d.roster, roster.to_bytes())
    return revocation


def prepare_join(data_dir: Path, code: str, now: float) -> PendingJoin:
    """Check the invite and the directory, and save this node's key (reused if a join resumes)."""
    d = DataDir(Path(data_dir))
    invite = decode_invite(code)
    if invite.expires_at <= now:
        raise InviteError("Mã mời đã hết hạn; xin mã mới ở trụ sở", "the invite has expired; ask HQ for a new one")
    _refuse_if_member(d)
    if d.admin_key.exists():
        raise ConfigError(
            f"Thư mục {d.root} giữ khóa quản trị của một xã", f"{d.root} holds a commune admin key; use another directory"
        )
    d.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    (d.run).mkdir(mode=DIR_MODE, exist_ok=True)
    node = load_key(d.node_key) if d.node_key.exists() else _new_key(d.node_key)
    return PendingJoin(d.root, invite, node)


def finish_join(data_dir: Path, pending: PendingJoin, roster: Roster) -> MembershipSummary:
    """Write the roster a JoinClient verified (Joined.roster); the node key is already on disk."""
    d = DataDir(Path(data_dir))
    if roster.admin_public_key != pending.invite.admin_public_key:
        raise ConfigError("Danh sách thành viên thuộc xã khác", "the roster belongs to another commune")
    summary = _summary(roster, pending.node_key)
    save_roster(d.root, roster)
    return summary


def load_membership(data_dir: Path) -> tuple[KeyPair, Roster, Member]:
    """What a starting node needs: its key, the roster, and its own roster entry."""
    d = DataDir(Path(data_dir))
    node = load_key(d.node_key)
    roster = load_roster(d.root)
    me = roster.member_by_public_key(node.public_key)
    if me is None:
        raise ConfigError(
            "Máy này không (còn) có trong danh sách thành viên của xã", "this node is not (or no longer) on the roster"
        )
    return node, roster, me
