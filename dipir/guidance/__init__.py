"""The diffusion judge: model loading, concept images, LoRA personalization, SDS/LDS guidance.

Submodules import diffusers/peft lazily at their own import, so `import dipir.guidance` is cheap.

- `models`: `load_pipeline`, `write_tiny_pipeline`, ε/v conversions.
- `concepts`: "a photo of a {class}" concept images, cached on disk.
- `lora`: `PersonalizeConfig`, `personalize`, `load_lora`, `adapters_disabled`.
- `guidance`: `GuidanceConfig`, `Guidance` (SDS / LDS losses, SDEdit `denoise`).
- `schedules`: t_max annealing.
"""
