"""Test helper: small, valid PDFs made by hand (no PDF library needed to write one).

Each page is filled with its own colour and carries a block whose place depends on the page
number, so every page renders to different pixels. `broken_pdfs()` gives malformed files for
the renderer's fault tests.
"""

from __future__ import annotations

PAGE_W, PAGE_H = 640, 360


def page_colour(n: int) -> tuple[float, float, float]:
    """The fill colour of page n (1-based): distinct for the first few hundred pages."""
    return ((n * 37 % 256) / 255, (n * 91 % 256) / 255, (n * 173 % 256) / 255)


def make_pdf(pages: int, *, width: int = PAGE_W, height: int = PAGE_H, pad_bytes: int = 0) -> bytes:
    """A PDF of `pages` pages; `pad_bytes` adds an unused stream so the file spans several chunks."""
    objs: list[bytes] = []
    kids = []
    n_fixed = 2
    for i in range(pages):
        page_obj = n_fixed + 1 + 2 * i
        kids.append(f"{page_obj} 0 R")
    for i in range(pages):
        n = i + 1
        r, g, b = page_colour(n)
        x = 20 + (n * 53) % (width - 120)
        y = 20 + (n * 29) % (height - 80)
        content = (f"{r:.4f} {g:.4f} {b:.4f} rg 0 0 {width} {height} re f "
                   f"1 1 1 rg {x} {y} 80 40 re f 0 0 0 rg {x + 10} {y + 10} {10 + n % 50} 20 re f").encode()
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents {n_fixed + 2 + 2 * i} 0 R >>".encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    head = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>".encode()]
    all_objs = head + objs
    if pad_bytes:
        pad = bytes((i * 7919) & 0xFF for i in range(pad_bytes))
        all_objs.append(b"<< /Length %d >>\nstream\n" % len(pad) + pad + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for k, body in enumerate(all_objs, start=1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(all_objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(all_objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def broken_pdfs() -> dict[str, bytes]:
    """Malformed inputs a renderer must survive (each must give a clear error, never a crash)."""
    good = make_pdf(2)
    return {
        "empty": b"",
        "not_pdf": b"hello, this is not a PDF at all\n" * 10,
        "truncated": good[: len(good) // 2],
        "garbage_xref": good.replace(b"xref", b"xxxx"),
        "huge_mediabox": make_pdf(1).replace(b"/MediaBox [0 0 640 360]", b"/MediaBox [0 0 14400000 14400000]"),
        "zero_pages": make_pdf(1).replace(b"/Count 1", b"/Count 0").replace(b"/Kids [3 0 R]", b"/Kids []"),
    }
