"""The node process: trio drivers around the sans-IO cores (links, discovery, gateway)."""
