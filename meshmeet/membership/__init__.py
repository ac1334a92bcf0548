"""Who belongs to the commune: node keys, the signed roster, invites, joining, the data dir.

Modules: ``identity`` (Ed25519 key files, node and commune ids), ``roster_entries`` (signed seat
and claim entries and their codec), ``roster`` (the roster CRDT of admin-signed seats and
enrolment-signed claims), ``roster_gossip`` (its digest/entries exchange on links), ``invite``
(invite codes), ``join`` (the sans-IO join exchange, both sides), ``datadir`` (the data dir's
files, written crash-safe). Everything here is sans-IO except small file reads and writes in
``identity`` and ``datadir``. This package must never open sockets, import trio, or trust an
entry it has not verified against the admin key.
"""
