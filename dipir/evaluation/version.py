"""The scoring protocol's version. Each result records the version that computed its metrics, and a
run scores again any result of an older one: a metric whose definition changed must not average old
values under its new description.

1  until December 2026 (results that record no version).
2  sphere RMSE tone-maps both maps with the ground truth's scale (it saw no exposure error); a black
   predicted pixel counts 90° in the angular error (it counted 0°); a uniform or black ground-truth
   map has no light direction (it gave 45°); an emitter asset glows in the ground truth and in every
   result's render (the glow was dropped).
3  the ground truth is read as every lighting map is (`hdr.read_equirect`: negative texels clipped, as
   the oracle's were, so the oracle scored above 0 against its own map; a map not 2:1 refused), and
   backgrounds as viewers show them (EXIF orientation applied, 16-bit grey scaled, not clipped to
   white): what every method saw and was scored against changed for such scenes, though not their ids.
"""

EVALUATION_VERSION = 3
