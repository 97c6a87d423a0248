"""The scoring protocol's version. Each result records the version that computed its metrics, and a
run scores again any result of an older one: a metric whose definition changed must not average old
values under its new description.

1  until December 2026 (results that record no version).
2  sphere RMSE tone-maps both maps with the ground truth's scale (it saw no exposure error); a black
   predicted pixel counts 90° in the angular error (it counted 0°); a uniform or black ground-truth
   map has no light direction (it gave 45°); an emitter asset glows in the ground truth and in every
   result's render (the glow was dropped).
"""

EVALUATION_VERSION = 2
