"""A small pixel-space diffusion prior trained on the mini world (`dipir prior train|check`)."""
