"""LoRa control messages, sans-IO: frames, flooding, airtime budget, and modem protocol parsing.

Modules: ``core`` (the LoRa node: flood, dedupe, fragments, acks, airtime), ``frames``,
``fragment``, ``messages``, ``replay``, ``counter``, ``airtime``, ``region`` (legality of radio
settings), ``at`` (RAK3172 AT parser) and ``e22proto`` (E22 registers and framing),
``keyshare`` (the signed commune LoRa key), ``requests`` (API JSON <-> messages),
``statewatch`` (which meeting-state changes to mirror), ``alertlog``. The drivers that move
their bytes are in ``meshmeet.lora_io``. This package must never import trio, open a port or
read a clock: callers pass bytes and ``now`` in.
"""
