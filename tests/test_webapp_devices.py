"""A resident's phone on the hall's Wi-Fi must not vote, check in or ask to speak for the hall once
the site set a device PIN (web/app/devices.py); a paired tablet does. The real web app on a
loopback aiohttp server with a stub node API (as test_webapp_routes.py), and the device book's
files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshmeet.web.app import auth, devices
from test_webapp_routes import PIN, TOKEN, Stub, _json, browser, run

DEVICE_PIN = "135790"
VOTE = {"motion_id": "m", "choice": "yes", "count": 100000}


def test_without_a_device_pin_tablets_need_no_pairing(tmp_path: Path) -> None:
    async def scenario(http, url, stub, shared):
        async with http.post(url + "/api/vote", json=VOTE, headers=browser(url)) as r:
            vote = r.status
        async with http.get(url + "/app/session") as r:
            session = await r.json()
        async with http.post(url + "/app/pair", json={"pin": DEVICE_PIN}, headers=browser(url)) as r:
            pair = await _json(r)
        return vote, session, pair

    vote, session, pair = run(tmp_path, scenario)
    assert vote == 200 and session["device"] == {"required": False, "paired": True}
    assert pair[0] == 409 and "meshmeet device-pin" in pair[1]["error"]["en"]


def test_a_phone_on_the_wifi_cannot_act_for_the_hall_and_a_paired_tablet_can(tmp_path: Path) -> None:
    devices.write_device_pin(tmp_path, DEVICE_PIN)

    async def scenario(http, url, stub, shared):
        out = {}
        for name, args in (("vote", VOTE), ("checkin", {"meeting_id": "m", "present": 500}),
                           ("speak_request", {"meeting_id": "m", "state": "waiting"}), ("feedback", {"text": "x"})):
            async with http.post(url + "/api/" + name, json=args, headers=browser(url)) as r:
                out[name] = await _json(r)
        async with http.get(url + "/app/session") as r:
            out["session_before"] = (await r.json())["device"]
        async with http.post(url + "/app/pair", json={"pin": "000000"}, headers=browser(url)) as r:
            out["wrong"] = r.status
        async with http.post(url + "/app/pair", json={"pin": DEVICE_PIN}, headers=browser(url)) as r:
            out["pair"] = r.status
            cookie = r.cookies.get(devices.COOKIE)
            out["cookie"] = (cookie["httponly"], cookie["samesite"], int(cookie["max-age"]))
        async with http.post(url + "/api/vote", json=VOTE, headers=browser(url)) as r:
            out["paired_vote"] = r.status
        async with http.get(url + "/app/session") as r:
            out["session_after"] = (await r.json())["device"]
        async with http.post(url + "/api/vote", json=VOTE, headers={"X-Meshmeet-Token": TOKEN}) as r:
            out["cli"] = r.status
        async with http.get(url + "/api/meeting?id=m", headers=browser(url)) as r:
            out["read"] = r.status  # reading stays open to every page (the TV)
        return out, [c[0] for c in stub.calls]

    out, calls = run(tmp_path, scenario)
    for name in ("vote", "checkin", "speak_request", "feedback"):
        status, body = out[name]
        assert status == 401 and body["error"]["code"] == "device_pairing" and body["error"]["vi"], (name, out[name])
    assert out["session_before"] == {"required": True, "paired": False}
    assert out["wrong"] == 401 and out["pair"] == 200
    assert out["cookie"] == (True, "Strict", devices.COOKIE_MAX_AGE_S)
    assert out["paired_vote"] == 200 and out["cli"] == 200 and out["read"] == 200
    assert out["session_after"] == {"required": True, "paired": True}
    assert calls == ["vote", "vote", "meeting"]  # nothing of the unpaired phone reached the node
    book = (tmp_path / devices.DEVICES_FILE)
    assert book.stat().st_mode & 0o777 == 0o600 and len(json.loads(book.read_text())["devices"]) == 1


def test_pairing_survives_a_restart_a_new_pin_unpairs_and_the_chair_may_act(tmp_path: Path) -> None:
    devices.write_device_pin(tmp_path, DEVICE_PIN)
    auth.write_pin(tmp_path, PIN)
    jar: dict = {}

    async def pair(http, url, stub, shared):
        async with http.post(url + "/app/pair", json={"pin": DEVICE_PIN}, headers=browser(url)) as r:
            jar["token"] = r.cookies[devices.COOKIE].value

    run(tmp_path, pair)

    async def after_restart(http, url, stub, shared):
        out = {}
        headers = {**browser(url), "Cookie": f"{devices.COOKIE}={jar['token']}"}
        async with http.post(url + "/api/vote", json=VOTE, headers=headers) as r:
            out["restarted"] = r.status
        devices.write_device_pin(tmp_path, "975310")  # `meshmeet device-pin` while the node runs
        async with http.post(url + "/api/vote", json=VOTE, headers=headers) as r:
            out["new_pin"] = r.status
        async with http.post(url + "/api/vote", json=VOTE, headers={**headers, "Cookie": f"{devices.COOKIE}=forged"}) as r:
            out["forged"] = r.status
        async with http.post(url + "/app/login", json={"pin": PIN}, headers=browser(url)) as r:
            assert r.status == 200
        async with http.post(url + "/api/vote", json=VOTE, headers=browser(url)) as r:
            out["chair"] = r.status
        return out

    out = run(tmp_path, after_restart, stub=Stub())
    assert out == {"restarted": 200, "new_pin": 401, "forged": 401, "chair": 200}


def test_wrong_device_pins_are_rate_limited_per_client(tmp_path: Path) -> None:
    devices.write_device_pin(tmp_path, DEVICE_PIN)

    async def scenario(http, url, stub, shared):
        codes = []
        for pin in ("000001", "000002", "000003", "000004", DEVICE_PIN):
            async with http.post(url + "/app/pair", json={"pin": pin}, headers=browser(url)) as r:
                codes.append(r.status)
        return codes

    assert run(tmp_path, scenario) == [401, 401, 401, 429, 429]


def test_the_device_book_keeps_digests_only_and_refuses_loose_files(tmp_path: Path) -> None:
    devices.write_device_pin(tmp_path, DEVICE_PIN)
    book = devices.DeviceBook(tmp_path)
    tokens = [book.pair() for _ in range(3)]
    text = (tmp_path / devices.DEVICES_FILE).read_text() + (tmp_path / devices.DEVICE_PIN_FILE).read_text()
    assert not any(t in text for t in tokens) and DEVICE_PIN not in text
    assert all(book.paired(t) for t in tokens) and book.count() == 3 and not book.paired("x" * 200)
    (tmp_path / devices.DEVICES_FILE).write_text("{not json")
    assert not book.paired(tokens[0])  # damaged: nobody paired (never open)
    (tmp_path / devices.DEVICE_PIN_FILE).chmod(0o644)
    with pytest.raises(auth.PinError, match="readable by others"):
        book.required()
    devices.write_device_pin(tmp_path, None)
    assert not book.required() and not (tmp_path / devices.DEVICES_FILE).exists()
    with pytest.raises(auth.PinError):
        devices.write_device_pin(tmp_path, "12")


def test_device_pin_command_sets_and_clears(tmp_path: Path) -> None:
    data = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "meshmeet", "init", "--data-dir", str(data), "--commune", "Xã Thử",
                    "--site", "Thôn 1"], check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "meshmeet", "device-pin", "--data-dir", str(data), "--pin-stdin"],
                          input=DEVICE_PIN + "\n", capture_output=True, text=True)
    assert done.returncode == 0 and "ghép lại" in done.stdout and DEVICE_PIN not in done.stdout + done.stderr
    assert devices.DeviceBook(data).check_pin(DEVICE_PIN)
    bad = subprocess.run([sys.executable, "-m", "meshmeet", "device-pin", "--data-dir", str(data), "--pin-stdin"],
                         input="12ab\n", capture_output=True, text=True)
    assert bad.returncode != 0 and "digits" in bad.stderr and "Traceback" not in bad.stderr
    cleared = subprocess.run([sys.executable, "-m", "meshmeet", "device-pin", "--data-dir", str(data), "--clear"],
                             capture_output=True, text=True)
    assert cleared.returncode == 0 and not devices.DeviceBook(data).required()


def test_an_unpaired_phone_cannot_open_the_presenter_socket(tmp_path: Path) -> None:
    """/media/ws/present is what /present and the hall's speaking page send through: with a device
    PIN set, an unpaired browser is refused at the upgrade; a paired one gets past the guard."""
    devices.write_device_pin(tmp_path, DEVICE_PIN)

    async def scenario(http, url, stub, shared):
        out = {}
        ws_headers = {**browser(url), "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        async with http.get(url + "/media/ws/present", headers=ws_headers) as r:
            out["phone"] = await _json(r)
        async with http.post(url + "/app/pair", json={"pin": DEVICE_PIN}, headers=browser(url)) as r:
            assert r.status == 200
        async with http.get(url + "/media/ws/present", headers=ws_headers) as r:
            out["tablet"] = r.status  # past the guard (this harness has no media routes: 404)
        return out

    out = run(tmp_path, scenario)
    assert out["phone"][0] == 401 and out["phone"][1]["error"]["code"] == "device_pairing"
    assert out["tablet"] == 404


def test_a_secret_file_is_written_whole_and_private_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """meshmeet/private_file.py (the API token, PIN hashes, the stream key, devices, TLS keys and
    Zalo credentials): 0600 from the start, never through a planted link, and a failed write (a
    full disk) leaves the old file as it was and no temporary file behind."""
    import os

    from meshmeet.private_file import write_private

    target = tmp_path / "secret"
    write_private(target, "first\n")
    assert target.read_text() == "first\n" and target.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / f"secret.{os.getpid()}.tmp").symlink_to(elsewhere)  # a link planted at the temporary name
    write_private(target, b"second\n")
    assert target.read_bytes() == b"second\n" and not elsewhere.exists()

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, *a, **k):
            self.f = real_fdopen(fd, *a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", FullDisk)
    with pytest.raises(OSError, match="No space"):
        write_private(target, "third\n")
    assert target.read_bytes() == b"second\n" and sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
