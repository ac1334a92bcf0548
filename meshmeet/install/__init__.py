"""Offline install: the bundle builder (`bundle.py`), its manifest and checks (`manifest.py`), and the
files the bundle carries to a hall box (`install.sh`, `meshmeet.service`). Nothing here runs in a node."""
