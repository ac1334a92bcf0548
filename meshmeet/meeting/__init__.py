"""The meeting domain: meetings, agenda, motions, ballots, attendance, and the rules they obey.

Modules: ``authority`` (who may set each column, value ranges, hall-owned ids: the law every
replica applies, docs/state.md), ``rules`` (that law compiled per table; run on every change,
local or received), ``tally`` (the one counting function for ballots), ``meetings`` (the domain's
operations on a ``Store``: open a meeting, add an item, cast a ballot, ...), ``replica``
(``open_store``: a node's store opened under these rules; the store never imports this package). Each rule lives here
once; the HTTP API only maps this package's errors to status codes. This package must never open
sockets, import trio or aiohttp, or know about HTTP.
"""
