"""The testbed: real `meshmeet run` hosts in Linux network namespaces, built from a scenario file.

Parts: delayline.py (sans-IO link emulator core: bytes scheduled by time), emulator.py (its thin
trio TCP proxy driver), packetcore.py (sans-IO packet-level emulator: loss, rate cap + drop-tail
queue, delay + jitter, per direction), profiles.py (presets A-E), tun.py + packetlink.py (its trio
forwarder between two TUN devices), tunlink.py (wiring a forwarder between two namespaces),
plan.py (scenario -> namespaces, veths, addresses, commands; pure), netns.py (runs `ip`/`tc`/`iptables`, enters namespaces, cleans up by prefix), converge.py (is the
tree whole? pure), bed.py (the Testbed: up, faults, polling, down) and cli.py (`scripts/testbed`).
Nothing here may be imported by the node itself, and no address it assigns may leave the
namespaces it creates (10.77.0.0/16 only inside them; the node HTTP APIs stay on each namespace's
127.0.0.1).
"""
