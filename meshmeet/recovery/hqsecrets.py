"""What only HQ holds, gathered from its data dir for a backup and written back on a new machine.

The bundle: the commune admin key seed, HQ's node key seed (so the restored HQ is the same roster
member and the halls link to it at once), the commune CA key and certificate (so the halls'
HTTPS certificates stay valid), the record of issued certificates (web/crl.py), and the roster as
it was (gossip brings newer entries back). Encoded as canonical msgpack; docs/protocol/recovery.md.
It must never write over an existing key or roster, and never install a bundle whose roster does
not belong to its admin key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgpack

from ..membership.datadir import DataDir, _write_atomic, load_roster
from ..errors import ConfigError
from ..membership.identity import KeyPair, commune_id_of, load_key, save_key
from ..membership.roster import Roster, RosterError
from ..web import crl as crl_mod
from ..web import tls

BUNDLE_VERSION = 1
SEED_BYTES = 32
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
CHECK_BYTES = 16


@dataclass(frozen=True)
class HqSecrets:
    admin_seed: bytes
    node_seed: bytes
    ca_key_pem: bytes
    ca_cert_pem: bytes
    issued_json: bytes
    roster: bytes  # Roster.to_bytes() at backup time
    made_at: int

    @property
    def commune_id(self) -> bytes:
        return commune_id_of(KeyPair.from_seed(self.admin_seed).public_key)

    def to_bytes(self) -> bytes:
        return msgpack.packb({"v": BUNDLE_VERSION, "admin": self.admin_seed, "node": self.node_seed,
                              "ca_key": self.ca_key_pem, "ca_crt": self.ca_cert_pem, "issued": self.issued_json,
                              "roster": self.roster, "made_at": self.made_at}, use_bin_type=True)

    def check(self) -> bytes:
        """16 bytes that name this bundle (BLAKE2b): shares carry it so a restore knows they belong together."""
        return hashlib.blake2b(self.to_bytes(), digest_size=CHECK_BYTES, person=b"meshmeet-bkchk").digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "HqSecrets":
        bad = ConfigError("Dữ liệu sao lưu bị hỏng", "backup contents are corrupt")
        if len(data) > MAX_BUNDLE_BYTES:
            raise bad
        try:
            d = msgpack.unpackb(data, raw=False)
        except Exception:  # msgpack raises several types on junk
            raise bad from None
        if not isinstance(d, dict) or d.get("v") != BUNDLE_VERSION:
            raise bad
        fields = ("admin", "node", "ca_key", "ca_crt", "issued", "roster")
        if not all(type(d.get(f)) is bytes for f in fields) or type(d.get("made_at")) is not int:
            raise bad
        if len(d["admin"]) != SEED_BYTES or len(d["node"]) != SEED_BYTES:
            raise bad
        return cls(d["admin"], d["node"], d["ca_key"], d["ca_crt"], d["issued"], d["roster"], d["made_at"])


def gather(data_dir: Path, now: float) -> HqSecrets:
    """HQ: read what a backup must hold; ConfigError when this is not an HQ data dir."""
    d = DataDir(Path(data_dir))
    if not d.admin_key.exists():
        raise ConfigError("Máy này không giữ khóa quản trị của xã; sao lưu trên máy trụ sở (HQ)",
                          "this node does not hold the commune admin key; back up on the HQ node")
    admin, node = load_key(d.admin_key), load_key(d.node_key)
    roster = load_roster(d.root)
    if roster.admin_public_key != admin.public_key:
        raise ConfigError(f"{d.admin_key} không khớp danh sách thành viên", f"{d.admin_key} does not match the roster")

    def read(p: Path) -> bytes:
        try:
            return p.read_bytes()
        except FileNotFoundError:
            return b""

    return HqSecrets(bytes(admin.signing_key), bytes(node.signing_key), read(d.root / tls.CA_KEY_FILE),
                     read(d.root / tls.CA_CERT_FILE), read(d.root / tls.TLS_DIR / crl_mod.ISSUED_FILE),
                     roster.to_bytes(), int(now))


def install(data_dir: Path, secrets: HqSecrets) -> Roster:
    """A new HQ machine: write the keys, CA and roster into an empty data dir; returns the roster."""
    d = DataDir(Path(data_dir))
    for p in (d.admin_key, d.node_key, d.roster, d.root / tls.CA_KEY_FILE):
        if p.exists():
            raise ConfigError(f"{p} đã có; khôi phục vào một thư mục dữ liệu trống",
                              f"{p} already exists; restore into an empty data dir")
    admin = KeyPair.from_seed(secrets.admin_seed)
    try:
        roster = Roster.from_bytes(secrets.roster)
    except RosterError:
        raise ConfigError("Danh sách thành viên trong bản sao lưu bị hỏng", "the roster in the backup is corrupt") from None
    if roster.admin_public_key != admin.public_key:
        raise ConfigError("Bản sao lưu không nhất quán (khóa quản trị khác danh sách)",
                          "the backup is inconsistent (admin key does not match its roster)")
    d.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (d.run).mkdir(mode=0o700, exist_ok=True)
    save_key(d.admin_key, admin)
    save_key(d.node_key, KeyPair.from_seed(secrets.node_seed))
    if secrets.ca_key_pem:
        tls._write_private(d.root / tls.CA_KEY_FILE, secrets.ca_key_pem)
        tls._write_public(d.root / tls.CA_CERT_FILE, secrets.ca_cert_pem)
    if secrets.issued_json:
        tls._write_private(d.root / tls.TLS_DIR / crl_mod.ISSUED_FILE, secrets.issued_json)
    _write_atomic(d.roster, roster.to_bytes())
    return roster
