"""Live audio/video for meshmeet: chunk format, relay decisions, feedback, datagrams, recording sync (sans-IO).

Recording files are written by ``meshmeet.recording``; ``recsync`` here decides what to fetch.
This package must never open sockets, import trio or aiohttp, or read a clock: drivers pass
bytes and `now` in, and take bytes, events and deadlines out.
"""
