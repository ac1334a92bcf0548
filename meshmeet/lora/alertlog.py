"""Recent urgent alerts, sent and received, with who has acknowledged them.

Plain records the node keeps in DIR/lora-alerts.json and shows in status["lora"]["alerts"]:
for an alert this node sent, which members acked and which are still missing (or gave up); for
one it received, when. Received alerts are deduplicated by (source, msg_id), so a retry or a
replay after restart is shown once. An alert that mirrors a sync announcement carries its id
(`announcement_id`), so the hall can tell that announcement, arriving later by sync, was already
shown (`announcement_ids()`). This module is sans-IO and must never grow past MAX_ALERTS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

MAX_ALERTS = 50


@dataclass(frozen=True)
class AlertRecord:
    id: str  # "source:msg_id"
    source: int
    msg_id: int
    text: str
    issued_at: int
    direction: str  # "sent" or "received"
    at: float  # unix seconds when sent or received here
    acked_by: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    gave_up: bool = False
    announcement_id: str = ""  # hex id of the sync announcement this alert mirrors, "" if none

    def as_json(self, site_of) -> dict:
        out = asdict(self)
        out["acked_by"] = list(self.acked_by)
        out["missing"] = list(self.missing)
        out["source_site"] = site_of(self.source)
        out["acked_sites"] = [site_of(s) for s in self.acked_by]
        out["missing_sites"] = [site_of(s) for s in self.missing]
        return out


@dataclass
class AlertLog:
    records: list[AlertRecord] = field(default_factory=list)

    @staticmethod
    def alert_id(source: int, msg_id: int) -> str:
        return f"{source}:{msg_id}"

    def _find(self, source: int, msg_id: int) -> int | None:
        key = self.alert_id(source, msg_id)
        return next((i for i, r in enumerate(self.records) if r.id == key), None)

    def _append(self, record: AlertRecord) -> None:
        self.records.append(record)
        del self.records[:-MAX_ALERTS]

    def sent(self, source: int, msg_id: int, text: str, issued_at: int, expect: frozenset[int], at: float,
             announcement_id: str = "") -> AlertRecord:
        record = AlertRecord(self.alert_id(source, msg_id), source, msg_id, text, issued_at, "sent", at,
                             missing=tuple(sorted(expect)), announcement_id=announcement_id)
        self._append(record)
        return record

    def received(self, source: int, msg_id: int, text: str, issued_at: int, at: float,
                 announcement_id: str = "") -> AlertRecord | None:
        """The new record, or None when this alert was already here."""
        if self._find(source, msg_id) is not None:
            return None
        record = AlertRecord(self.alert_id(source, msg_id), source, msg_id, text, issued_at, "received", at,
                             announcement_id=announcement_id)
        self._append(record)
        return record

    def acked(self, source: int, msg_id: int, by: int) -> AlertRecord | None:
        i = self._find(source, msg_id)
        if i is None or by in self.records[i].acked_by:
            return None
        r = self.records[i]
        self.records[i] = replace(r, acked_by=tuple(sorted({*r.acked_by, by})),
                                  missing=tuple(s for s in r.missing if s != by))
        return self.records[i]

    def gave_up(self, source: int, msg_id: int, missing: frozenset[int]) -> AlertRecord | None:
        i = self._find(source, msg_id)
        if i is None:
            return None
        self.records[i] = replace(self.records[i], gave_up=True, missing=tuple(sorted(missing)))
        return self.records[i]

    def announcement_ids(self) -> list[str]:
        """Ids of the sync announcements already shown here because their alert came over LoRa."""
        return sorted({r.announcement_id for r in self.records if r.direction == "received" and r.announcement_id})

    def to_json(self) -> list[dict]:
        return [asdict(r) for r in self.records]

    @classmethod
    def from_json(cls, obj: object) -> "AlertLog":
        """A log from lora-alerts.json; anything malformed is skipped, not fatal."""
        log = cls()
        if not isinstance(obj, list):
            return log
        for item in obj[-MAX_ALERTS:]:
            try:
                log.records.append(AlertRecord(
                    id=str(item["id"]), source=int(item["source"]), msg_id=int(item["msg_id"]), text=str(item["text"]),
                    issued_at=int(item["issued_at"]), direction=str(item["direction"]), at=float(item["at"]),
                    acked_by=tuple(int(x) for x in item.get("acked_by", [])),
                    missing=tuple(int(x) for x in item.get("missing", [])), gave_up=bool(item.get("gave_up", False)),
                    announcement_id=str(item.get("announcement_id", "")),
                ))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return log
