"""Does the prior prefer the truth-lit composite to the composite each method's lighting gives?

    .venv/bin/python benchmarks/prior_prefers.py SUITE RUN --model PRIOR [--n-noise 64] [--json OUT]

`dipir prior forms` asks whether a guidance form's energy prefers the true composite to the same
scene with its sun rotated. A suite asks something else of the optimizer: the guidance can also
raise the sun, dim it against the sky and bend the tone curves. This script scores the composites a
suite ended with. For every scene of a run folder (`dipir run SUITE --out RUN`, read read-only,
as `dipir report` does) the object is rendered into the background under the ground-truth map and
under every finished task's estimated map (`envmap.exr`), all with the same renderer, samples and
seed as the check's composites (64 spp at the prior's size: the suite's own composites carry Monte
Carlo noise that differs with the map, and a denoising loss scores noise), and each composite is
scored under the same noise and timesteps (the t range DiPIR samples, w(t)-weighted, as `prior
forms`). Tone curves are left out (the ablation found they do not move the sun either). Each form on the base model gets the same treatment: `prior ∅` (E(∅), what the
prior alone knows), `sds-no-cfg` (E(c)) and `lds-no-lora` (E(c) − E(∅), the difference DiPIR's
LDS follows). Printed per method and form: on how many scenes the truth's energy is the lower
(sign test against a coin).

A method whose composites the guidance's own form prefers to the truth is where that guidance
leads: the optimizer found a lower energy away from the truth, and no amount of optimization
brings it back. If the truth wins against DiPIR's composites, the optimizer stopped short of a
minimum the form does put at the truth. The scene's LoRA is not used (the suite's ablation found
it does not move where the sun ends up, docs/mini_world_runs.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_folder import json_out, read_run, task_name  # noqa: E402
from sun_trajectory import sign_p  # noqa: E402

from dipir.errors import DipirError  # noqa: E402

FORMS = ("prior ∅", "sds-no-cfg", "lds-no-lora")


def energies(suite_path: Path, run: Path, model: str, n_noise: int, log=print) -> dict[str, dict[str, dict]]:
    """scene -> {"truth": {form: energy}, method[/preset]: {form: energy}} for every scene of RUN with a
    ground-truth composite."""
    import torch

    from dipir.guidance.guidance import Guidance
    from dipir.guidance.prompts import scene_fields
    from dipir.optim.optimizer import load_model
    from dipir.optim.presets import get_preset
    from dipir.prior.check import PriorCheckConfig, noise_seed, timesteps
    from dipir.prior.forms import denoising_losses, form_energies
    from dipir.rendering.hdr import read_hdr
    from dipir.rendering.renderer import InsertionRenderer, RenderConfig, render_insertion
    from dipir.scene.contract import load_scene
    from pipelines.execute import model_cache_dir
    from pipelines.scenes import build_scene

    refs, rows = read_run(suite_path, run)
    done = rows[(rows["status"] == "done") & rows["artifact.envmap"].notna() & rows["artifact.gt_composite"].notna()]
    per_scene: dict[tuple, list[dict]] = defaultdict(list)
    for row in done.to_dict("records"):
        if (row["dataset"], row["scene_id"]) in refs:
            per_scene[(row["dataset"], row["scene_id"])].append(row)
    pipe = load_model(model, cache_dir=model_cache_dir(run))
    gcfg = get_preset("dipir").guidance
    ccfg = PriorCheckConfig(n_noise=n_noise)
    T = int(pipe.scheduler.config.num_train_timesteps)
    t = timesteps(ccfg, T)
    size = int(pipe.unet.config.sample_size)
    out: dict[str, dict[str, dict]] = {}
    for i, (scene, task_rows) in enumerate(sorted(per_scene.items())):
        ref = refs[scene]
        sc = load_scene(build_scene(ref.recipe, ref.key, run))
        guidance = Guidance(pipe, gcfg, sc.object.cls, scene_fields(sc))
        names = ["truth"] + [task_name(r) for r in task_rows]
        renderer = InsertionRenderer(sc, RenderConfig(width=size, height=size, spp=ccfg.spp))
        maps = [read_hdr(sc.envmap)] + [read_hdr(run / r["artifact.envmap"]) for r in task_rows]
        images = [render_insertion(sc, m, renderer=renderer, seed=ccfg.seed)["composite"] for m in maps]
        noise = torch.randn((n_noise, 3, size, size), generator=torch.Generator().manual_seed(noise_seed(ccfg, i)))
        e = form_energies(denoising_losses(guidance, images, t, noise, lora=False), gcfg.guidance_scale)
        out["/".join(scene)] = {n: {f: float(e[f][k].mean()) for f in FORMS} for k, n in enumerate(names)}
        log(f"{i + 1}/{len(per_scene)} {'/'.join(scene)}")
    return out


def summary(scores: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """method -> form -> {truth_lower, scenes, p}: on how many scenes the truth's energy is the lower."""
    from dipir.prior.verdict import truth_wins

    out: dict[str, dict[str, dict]] = defaultdict(dict)
    methods = sorted({m for s in scores.values() for m in s if m != "truth"})
    for m in methods:
        for f in FORMS:
            v = [bool(truth_wins(s["truth"][f], s[m][f])) for s in scores.values() if m in s]
            out[m][f] = {"truth_lower": sum(v), "scenes": len(v), "p": sign_p(sum(v), len(v))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--model", required=True, help="the prior (a folder or a shipped prior's name)")
    ap.add_argument("--n-noise", type=int, default=64)
    ap.add_argument("--json", type=json_out, default=None, help="also write every scene's energies here")
    args = ap.parse_args(argv)
    try:
        scores = energies(args.suite, args.run, args.model, args.n_noise, log=lambda s: print(s, file=sys.stderr))
    except DipirError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"the truth-lit composite's energy is the lower (scenes; sign test), prior {args.model}:")
    print(f"{'method':24s} " + "  ".join(f"{f:>22s}" for f in FORMS))
    for m, forms in summary(scores).items():
        print(f"{m:24s} " + "  ".join(f"{x['truth_lower']:>3d}/{x['scenes']:<3d} (p = {x['p']:.3f})".rjust(22)
                                      for x in forms.values()))
    if args.json:
        args.json.write_text(json.dumps(scores, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
