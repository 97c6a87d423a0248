"""The diffusion judge: model loading, concept images, LoRA personalization, SDS/LDS guidance.

Submodules import diffusers/peft only where needed, so `import dipir.guidance` is cheap.

- `config`: `GuidanceConfig`, `PersonalizeConfig` (torch-free).
- `models`: `load_pipeline` (latent SD-family and pixel-space IF-family models, shipped priors by
  name), `shared_pipeline` (one per process), `write_tiny_pipeline` / `write_tiny_pixel_pipeline`,
  ε/v conversions, `noise_scheduler`.
- `spaces`: where a model works (VAE latents or pixels), its native resolution, `ImageFit`.
- `sampling`: the DDIM + CFG loop shared by concept images and SDEdit.
- `sd21`: SD 2.1-base's module configs (GPU check, meta-device shape checks).
- `concepts`: "a photo of a {class}" concept images, cached on disk, shared across scenes.
- `lora`: `personalize`, `load_lora`, `adapters_disabled`, `release_adapters`.
- `guidance`: `Guidance` (SDS / LDS losses, SDEdit `denoise`).
- `schedules`: t_max annealing.
- `prompts`: the prompts DiPIR speaks to a model (DiPIR's, or the model's own `dipir_prompts.json`).

Typical use by an optimizer::

    from dipir.guidance.models import load_pipeline
    from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
    from dipir.guidance.guidance import Guidance
    from dipir.guidance.lora import personalize
    from dipir.guidance.prompts import scene_fields

    pipe = load_pipeline(model, device="cuda", dtype="float16")
    fields = scene_fields(scene)          # the class and captions a model's prompts may read
    personalize(pipe, background_pil, scene.object.cls, PersonalizeConfig(), cache_dir,
                scene_fields=fields)      # installs the LoRA
    judge = Guidance(pipe, GuidanceConfig(kind="lds"), scene.object.cls, fields)
    for step in range(iters):
        judge.update_step(step, iters)
        out = judge(composite)            # composite: [1,3,H,W] in [0,1], requires grad
        loss = out["loss_lds"] + ...      # diagnostics: out["t_mean"], out["grad_norm"], ...
"""
