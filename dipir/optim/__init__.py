"""The DiPIR optimizer: its config, presets, losses, the loop and its outputs."""
