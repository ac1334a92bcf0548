"""The web app's `/` page on a real node: it links every page an operator needs, including the
presenter page (/present) and the residents' feedback page (/y-kien), each link answers on the
same node, and each label has its Vietnamese text (first) and its English one."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from nodeproc import NodeProcess, make_commune

STATIC = Path(__file__).resolve().parents[1] / "meshmeet" / "web" / "app" / "static"


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def test_index_links_present_and_residents_pages_and_each_link_answers(tmp_path):
    hq_dir, _ = make_commune(tmp_path, 0)
    (hq_dir / "webapp.toml").write_text('https = "off"\n', encoding="utf-8")
    (hq_dir / "citizens.toml").write_text('listen = "off"\n', encoding="utf-8")  # /y-kien stays on the gateway
    node = NodeProcess(hq_dir, mdns=False)
    try:
        status, page = _get(node.url + "/")
        assert status == 200
        links = dict(re.findall(r'<a href="(/[^"]*)"[^>]*data-i18n="([a-z_]+)"', page))
        assert {"/present", "/y-kien", "/tv", "/tablet", "/chair"} <= set(links), links
        for href in links:
            assert _get(node.url + href)[0] == 200, href
    finally:
        node.stop()
    text = (STATIC / "i18n.js").read_text(encoding="utf-8")
    vi_block, en_block = text.split("\n  en: {", 1)
    for key in links.values():
        assert re.search(rf"\b{key}: \"[^\"]+\"", vi_block) and re.search(rf"\b{key}: \"[^\"]+\"", en_block), key
    assert re.search(r'nav_residents: "Ý kiến người dân"', vi_block)
