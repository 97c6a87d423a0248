"""The version of what DiPIR produces for the same config (its `EstimatorTraits.output_version`).
DiPIR's task ids hold it with its config (`dipir.estimators.config_identity`), so a change to the
method's code that changes its results makes a run compute DiPIR's tasks again instead of keeping
results of the older code as current. Bump it with such a change and say what changed.

1  until December 2026.
2  the fused map keeps L_shadow's luminance where L_fg is negligible (a sun the shadow map had found
   was erased there); the result carries the emission an emitter asset was rendered with.
"""

OUTPUT_VERSION = 2
