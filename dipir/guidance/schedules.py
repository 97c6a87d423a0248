"""Schedules for the guidance: the max-timestep fraction is annealed over the optimization."""

from __future__ import annotations


def progress(step: int, total_steps: int) -> float:
    """Fraction of the optimization done: 0 at step 0, 1 at the last step (`total_steps - 1`)."""
    if total_steps <= 1:
        return 1.0 if step > 0 else 0.0
    return min(max(step / (total_steps - 1), 0.0), 1.0)


def linear(step: int, total_steps: int, start: float, end: float) -> float:
    """Linear from `start` (step 0) to `end` (last step), clamped outside. DiPIR: t_max 0.6 -> 0.3."""
    return start + (end - start) * progress(step, total_steps)
