"""Signed releases: the manifest format, the versioned install layout, the supervisor.

`manifest.py` (sans-IO) signs and checks release manifests; `layout.py` installs a verified
bundle beside the running version and switches the `current` link; `supervise.py` runs the
node from `current`, checks a new version comes up healthy and rolls back when it does not.
The node side (fetching releases over sync, deciding when to restart) is
meshmeet/node/release_service.py. Format and rules: docs/release.md.
"""
