"""The replicated store: one SQLite file per node, its change log, and how changes merge.

Modules: ``db`` (``Store``: every local write and every received batch goes through it, with its
change-log entry in the same transaction), ``schema`` (tables and migrations), ``batch`` (signed
batches of changes, the unit of the change log), ``merge`` (LWW per column by HLC, add-only sets,
tombstones), ``hlc`` (hybrid logical clock), ``chunks``/``chunkstore`` (content-addressed document
chunks), ``errors``, ``diskfull`` (a full disk stops writing, nothing else), ``rules_port``
(the interface of the rules it is opened with). Which changes are allowed is decided by the
meeting domain's law (``meshmeet.meeting.rules``), which the store is given when opened
(``meshmeet.meeting.replica.open_store``) and applies; the store never imports the domain. This package must never open sockets, import trio or aiohttp, or read the wall clock
except through the HLC it is given.
"""
