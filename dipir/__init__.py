"""DiPIR bench: diffusion-guided inverse rendering for virtual object insertion, at dataset scale."""

__version__ = "0.1.0"
