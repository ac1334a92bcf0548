"""Fit an upstream picture into the mesh's 16:9 high layer without stretching it.

A 4:3 conference feed (or a phone's portrait video) is scaled to fit inside the frame and padded
with black: pillarboxed, or letterboxed when wider than 16:9. A source already 16:9 (within
`ASPECT_TOLERANCE`) is only scaled, as before. Pixels are taken as square: FFmpeg's sample aspect
ratio is not read (an anamorphic source still looks stretched).

Runs in the ingest worker process (CPU work); never changes a frame's timestamp (the caller sets it).
"""

from __future__ import annotations

from fractions import Fraction

import av

ASPECT_TOLERANCE = 0.01  # a source whose width/height is this close to the frame's is only scaled
OUT_FORMAT = "yuv420p"


def fitted_size(src_w: int, src_h: int, out_w: int, out_h: int) -> tuple[int, int]:
    """The largest even size with the source's aspect ratio that fits inside out_w x out_h."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"a picture of {src_w}x{src_h} has no aspect ratio")
    scale = min(out_w / src_w, out_h / src_h)
    w = min(out_w, max(2, round(src_w * scale / 2) * 2))
    h = min(out_h, max(2, round(src_h * scale / 2) * 2))
    return w, h


class Fitter:
    """`fit(frame)` returns the frame as out_w x out_h yuv420p, bars added where the aspect differs."""

    def __init__(self, out_w: int, out_h: int) -> None:
        self.out_w, self.out_h = out_w, out_h
        self._key: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None
        self.padded = False  # the last frame got bars

    def fit(self, frame: av.VideoFrame) -> av.VideoFrame:
        key = (frame.width, frame.height, frame.format.name)
        if key != self._key:
            self._graph = self._build(*key)
            self._key = key
        if self._graph is None:
            return frame.reformat(width=self.out_w, height=self.out_h, format=OUT_FORMAT)
        self._graph.push(frame)
        return self._graph.pull()

    def _build(self, width: int, height: int, pix_fmt: str) -> av.filter.Graph | None:
        if abs((width / height) / (self.out_w / self.out_h) - 1) <= ASPECT_TOLERANCE:
            self.padded = False
            return None
        w, h = fitted_size(width, height, self.out_w, self.out_h)
        graph = av.filter.Graph()
        chain = [graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=Fraction(1, 1_000_000)),
                 graph.add("scale", f"{w}:{h}"),
                 graph.add("pad", f"{self.out_w}:{self.out_h}:{(self.out_w - w) // 2}:{(self.out_h - h) // 2}:black"),
                 graph.add("format", OUT_FORMAT),
                 graph.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        self.padded = True
        return graph
