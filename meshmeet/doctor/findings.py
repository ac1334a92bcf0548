"""One doctor finding and how it is printed. Never runs a check itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, PROBLEM, SKIPPED = "ok", "problem", "skipped"
_MARK = {OK: "[ OK ]", PROBLEM: "[LỖI ]", SKIPPED: "[ -- ]"}


@dataclass(frozen=True)
class Finding:
    check: str  # member, keys, disk, ports, lora, node, links, mdns, clock, versions
    state: str  # ok, problem, skipped (could not be checked here)
    vi: str
    en: str
    fix_vi: str = ""
    fix_en: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def ok(check: str, vi: str, en: str) -> Finding:
    return Finding(check, OK, vi, en)


def problem(check: str, vi: str, en: str, fix_vi: str, fix_en: str) -> Finding:
    return Finding(check, PROBLEM, vi, en, fix_vi, fix_en)


def skipped(check: str, vi: str, en: str) -> Finding:
    return Finding(check, SKIPPED, vi, en)


def format_findings(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{_MARK[f.state]} {f.check:<8} {f.vi}")
        lines.append(f"{'':15}{f.en}")
        if f.state == PROBLEM:
            lines.append(f"{'':15}→ sửa: {f.fix_vi}")
            lines.append(f"{'':15}→ fix: {f.fix_en}")
    bad = sum(f.state == PROBLEM for f in findings)
    lines.append(f"{bad} vấn đề / problem(s)" if bad else "Không có vấn đề / no problems found")
    return "\n".join(lines)


def exit_code(findings: list[Finding]) -> int:
    """1 when anything is wrong, else 0 (a check that could not run is not a problem)."""
    return 1 if any(f.state == PROBLEM for f in findings) else 0
