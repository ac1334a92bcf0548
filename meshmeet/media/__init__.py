"""Live audio/video for meshmeet: chunk format, relay decisions, recorder (all sans-IO).

This package must never open sockets, import trio or aiohttp, or read a clock: drivers pass
bytes and `now` in, and take bytes, events and deadlines out.
"""
