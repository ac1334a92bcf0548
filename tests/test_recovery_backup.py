"""HQ backup file and shares, attacked first: a stolen file without the passphrase, a tampered or
crafted file, a single share holder, a share sealed to another hall, hostile bytes on every parser."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.datadir import create_invite, init_commune, load_roster
from meshmeet.errors import ConfigError
from meshmeet.membership.identity import KeyPair
from meshmeet.recovery import backup_file as bf
from meshmeet.recovery import shares as sh
from meshmeet.recovery.hqsecrets import HqSecrets, gather, install
from meshmeet.recovery.restore_client import RestoreError, rebuild
from meshmeet.web import tls

FAST = bf.KdfCost(bf.MIN_OPS, bf.MIN_MEM_BYTES)  # unit tests only; files carry their own costs
PASS = "một câu mật khẩu dài"


@pytest.fixture
def secrets(tmp_path) -> HqSecrets:
    hq = tmp_path / "hq"
    init_commune(hq, "Xã Thử", "UBND xã", 1_700_000_000)
    tls.create_ca(hq, "Xã Thử")
    create_invite(hq, "Thôn 1", "hall", 3600, ["127.0.0.1:1"], 1_700_000_000)
    return gather(hq, 1_700_000_100)


def test_stolen_file_without_the_passphrase_gives_nothing(secrets):
    data = bf.seal(secrets, PASS, FAST)
    for secret_part in (secrets.admin_seed, secrets.node_seed, secrets.ca_key_pem[40:80]):
        assert secret_part not in data
    with pytest.raises(ConfigError) as wrong:
        bf.open_file(data, PASS + "!")
    damaged = bytearray(data)
    damaged[-5] ^= 1
    with pytest.raises(ConfigError) as broken:
        bf.open_file(bytes(damaged), PASS)
    assert wrong.value.en == broken.value.en  # a wrong passphrase looks like damage
    assert bf.open_file(data, PASS) == secrets


def test_header_is_bound_to_the_ciphertext(secrets):
    data = bf.seal(secrets, PASS, FAST)
    d = msgpack.unpackb(data[len(bf.MAGIC):], raw=False)
    for field, value in (("commune", bytes(16)), ("made_at", 1), ("ops", bf.MIN_OPS + 1)):
        forged = bf.MAGIC + msgpack.packb({**d, field: value}, use_bin_type=True)
        with pytest.raises(ConfigError):
            bf.open_file(forged, PASS)


def test_crafted_kdf_costs_refused_before_any_work(secrets):
    data = bf.seal(secrets, PASS, FAST)
    d = msgpack.unpackb(data[len(bf.MAGIC):], raw=False)
    for field, value in (("mem", 1 << 40), ("ops", 10_000), ("mem", 0), ("kdf", "md5")):
        with pytest.raises(ConfigError):
            bf.read_header(bf.MAGIC + msgpack.packb({**d, field: value}, use_bin_type=True))


def test_short_passphrase_refused(secrets):
    with pytest.raises(ConfigError):
        bf.seal(secrets, "ngắn", FAST)


def test_default_cost_round_trip(secrets):
    data = bf.seal(secrets, PASS)  # Argon2id MODERATE: the real cost, once
    head = bf.read_header(data)
    assert head["ops"] == bf.DEFAULT_OPS and head["mem"] == bf.DEFAULT_MEM_BYTES
    assert bf.open_file(data, PASS) == secrets


def test_install_writes_keys_and_refuses_a_used_dir(secrets, tmp_path):
    new = tmp_path / "new"
    roster = install(new, secrets)
    assert roster.commune_id == secrets.commune_id and (new / "admin.key").stat().st_mode & 0o777 == 0o600
    assert load_roster(new).digest() == roster.digest()
    assert (new / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError):
        install(new, secrets)


def _halls(n):
    return [KeyPair.from_seed(bytes([i]) * 32) for i in range(1, n + 1)]


def test_one_holder_or_k_minus_one_cannot_rebuild(secrets):
    records = sh.make_records(secrets, 3, 5)
    with pytest.raises(RestoreError):
        rebuild(records[:1])
    with pytest.raises(RestoreError):
        rebuild(records[:2])
    assert rebuild([records[4], records[0], records[2]]) == secrets


def test_shares_of_two_backups_do_not_mix(secrets):
    a = sh.make_records(secrets, 2, 3)
    other = HqSecrets(secrets.admin_seed, secrets.node_seed, secrets.ca_key_pem, secrets.ca_cert_pem,
                      secrets.issued_json, secrets.roster, secrets.made_at + 1)
    b = sh.make_records(other, 2, 3)
    with pytest.raises(RestoreError):
        rebuild([a[0], b[1]])


def test_a_share_opens_only_for_its_hall(secrets):
    halls = _halls(2)
    record = sh.make_records(secrets, 2, 2)[0]
    sealed = sh.seal_to_node(halls[0].public_key, record)
    assert sh.open_with_node_key(sealed, halls[0]) == record
    with pytest.raises(sh.ShareError):
        sh.open_with_node_key(sealed, halls[1])
    assert secrets.admin_seed not in sealed


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_hostile_bytes_on_every_parser(data):
    for parse in (sh.decode_link, sh.decode_ask, sh.decode_answer, sh.ShareRecord.from_bytes):
        try:
            parse(data)
        except sh.ShareError:
            pass
    try:
        bf.read_header(bf.MAGIC + data)
    except ConfigError:
        pass
    try:
        HqSecrets.from_bytes(data)
    except ConfigError:
        pass


@settings(max_examples=100)
@given(st.lists(st.one_of(st.integers(-5, 300), st.binary(max_size=40), st.text(max_size=5), st.none()), max_size=5))
def test_hostile_msgpack_shapes(items):
    body = msgpack.packb(items, use_bin_type=True)
    for parse in (sh.decode_link, sh.decode_answer, sh.ShareRecord.from_bytes):
        try:
            parse(body)
        except sh.ShareError:
            pass
    try:
        sh.decode_ask(bytes([sh.RECOVERY_FIRST_BYTE]) + body)
    except sh.ShareError:
        pass


def test_code_is_eight_letters_and_depends_on_the_key():
    a, b = bytes(32), bytes([1]) + bytes(31)
    assert len(sh.code_of(a)) == 9 and sh.code_of(a) != sh.code_of(b)
