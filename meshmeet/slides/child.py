"""The PDF page renderer's child process: `python -m meshmeet.slides.child SPEC_JSON`.

A malformed or hostile PDF must never take the node down, so pdfium (C code) runs here, in a
process of its own, under limits set before the PDF is opened: address space (MEMORY_LIMIT_BYTES),
CPU seconds (CPU_LIMIT_S), size of any file written (FILE_LIMIT_BYTES), no core dumps. A crash,
a limit or a hang (the parent's deadline) costs this process only. It renders the asked pages of
the one PDF to PNG files in the cache directory (written to a temporary name, then renamed, so a
reader never sees half a file) and prints one JSON line: {"pages": N, "done": [..], "error": ...}.
The spec: {"pdf": path, "out": dir, "pages": [n, ...], "width": px, "max_pages": N}.
This module must never be imported by the node itself (only run as a child) and never write
outside `out`.
"""

from __future__ import annotations

import json
import os
import resource
import sys

MEMORY_LIMIT_BYTES = 1 << 30  # address space: pdfium + Python + one 1280-wide page is ~300 MB here
CPU_LIMIT_S = 20
FILE_LIMIT_BYTES = 64 << 20
MAX_HEIGHT_PX = 4096  # a page taller than 3.2x its width is rendered narrower, not taller


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def page_file(out: str, page: int, width: int) -> str:
    return os.path.join(out, f"p{page}-w{width}.png")


def main(argv: list[str]) -> int:
    _limit()
    spec = json.loads(argv[1])
    import pypdfium2 as pdfium  # after the limits: pdfium's own allocations count

    from meshmeet.slides.png import encode_rgb

    result: dict = {"pages": 0, "done": [], "error": None}
    try:
        doc = pdfium.PdfDocument(spec["pdf"])
    except Exception as e:  # pdfium's PdfiumError and friends: the file is not a PDF we can open
        result["error"] = f"cannot open PDF: {e}"
        print(json.dumps(result), flush=True)
        return 0
    n = len(doc)
    result["pages"] = n
    if n > spec["max_pages"]:
        result["error"] = f"too many pages: {n} > {spec['max_pages']}"
    elif n == 0:
        result["error"] = "the PDF has no pages"
    else:
        width = int(spec["width"])
        for number in spec["pages"]:
            if not 1 <= number <= n:
                continue
            page = doc[number - 1]
            w, h = page.get_width(), page.get_height()
            if not (w > 0 and h > 0):
                result["error"] = f"page {number} has no size"
                continue
            scale = min(width / w, MAX_HEIGHT_PX / h)
            bitmap = page.render(scale=scale, rev_byteorder=True)  # RGB order
            png = encode_rgb(bitmap.width, bitmap.height, bitmap.buffer, bitmap.stride)
            target = page_file(spec["out"], number, width)
            tmp = f"{target}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(png)
            os.replace(tmp, target)
            result["done"].append(number)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
