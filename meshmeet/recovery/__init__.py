"""HQ recovery: the admin key (and what HQ alone holds) backed up under a passphrase and as Shamir
shares held by halls, and restored on a new HQ machine. See docs/guide-en.md, "HQ recovery"."""
