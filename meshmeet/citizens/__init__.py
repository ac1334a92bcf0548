"""Residents' feedback page at every hall (issue 17): sans-IO form checks, rate limits, short codes,
sealed contacts and the local contact book. Nothing here does network I/O or reads a clock."""
