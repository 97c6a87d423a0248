"""Image formation: SG lighting, env-map conventions, the Mitsuba renderer, tone curves, compositing."""
