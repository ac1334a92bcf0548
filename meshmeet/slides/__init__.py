"""Slides from each hall's own copy: the page turn that travels (state.py), the PDF renderer that
runs in a child process under limits (render.py, child.py, png.py), the node plugin (service.py)
and its web route (web.py). See docs/slides.md."""
