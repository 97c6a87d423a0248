"""When the truth wins a pair: one rule for `prior check`, `prior forms` and `prior compare`.

Torch-free so that comparing two recorded results needs nothing but the JSON.
"""

from __future__ import annotations


def truth_wins(truth, rotated):
    """The truth wins when its score (a denoising loss, or a guidance form's energy) is strictly the
    lower; a tie is a loss, so a prior that cannot tell the lightings apart scores no pairs. Works
    elementwise on numpy arrays."""
    return truth < rotated
