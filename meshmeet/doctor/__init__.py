"""`meshmeet doctor`: what an operator gets wrong, found and explained (Vietnamese and English, with
the fix). `findings.py` the result type and its printing; `local.py` checks of this machine (key
permissions, disk, ports, LoRa profile); `peers.py` checks read from the running node's status
(clock offset, mDNS, links, version skew); `run.py` runs them in order. Nothing here changes the
machine or the node: the doctor only looks."""
