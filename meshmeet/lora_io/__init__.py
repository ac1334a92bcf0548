"""LoRa drivers: serial ports, the RAK3172 and E22 modem drivers, the pty emulator, state files.

The sans-IO LoRa cores (frames, flooding, airtime, AT and E22 protocol parsing) are in
``meshmeet.lora``; this package moves their bytes. Modules: ``modem`` (what every modem driver
offers), ``rak3172`` and ``e22`` (trio drivers), ``serial_io`` (a serial port as a trio stream),
``link`` (the thin loop joining a ``LoraCore`` to a modem), ``setup`` (open and configure the
node's modem), ``check`` (``meshmeet lora check`` / ``emulate``), ``emulator`` (emulated modems on
ptys sharing one simulated radio channel), ``statefile`` (atomic private files). This package
must never decide what the cores decide (priorities, budget, retries, legality).
"""
