"""LoRA adapter plumbing on a diffusers UNet (peft): install a fresh one, run without it, release it."""

from __future__ import annotations

import contextlib

import torch

from dipir.errors import DipirError

ADAPTER = "dipir_sks"


@contextlib.contextmanager
def adapters_disabled(unet):
    """Run the base weights: diffusers' `disable_adapters()` is a plain call, not a context
    manager, so disable, yield, and re-enable even on error. A UNet without adapters is untouched."""
    if not getattr(unet, "_hf_peft_config_loaded", False):
        yield unet
        return
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def has_adapter(unet, name: str = ADAPTER) -> bool:
    return name in (getattr(unet, "peft_config", None) or {})


def install_adapter(unet, rank: int = 4, alpha: float = 4.0,
                    target_modules=("to_q", "to_k", "to_v", "to_out.0"), name: str = ADAPTER) -> list:
    """A fresh LoRA on `unet` (replacing one of the same name); returns its parameters, in fp32.
    peft initializes B = 0, so a fresh adapter leaves the output unchanged."""
    from peft import LoraConfig

    if has_adapter(unet, name):
        unet.delete_adapters(name)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                target_modules=list(target_modules)), adapter_name=name)
    unet.set_adapter(name)
    params = [p for n, p in unet.named_parameters() if f".{name}." in n and "lora_" in n]
    if not params:
        raise DipirError(f"LoRA target modules {list(target_modules)} matched nothing in the UNet",
                         field="target_modules")
    for p in params:
        p.data = p.data.float()
    return params


def release_adapters(pipe) -> int:
    """Delete every LoRA adapter on `pipe.unet` (and its memory): the base weights remain, ready
    for the next run's adapter. Returns how many were deleted."""
    import gc

    unet = pipe.unet
    names = list(getattr(unet, "peft_config", None) or {})
    if names:
        unet.delete_adapters(names)
        freeze(unet)
    gc.collect()
    if torch.cuda.is_available() and unet.device.type == "cuda":
        torch.cuda.empty_cache()
    return len(names)


def freeze(unet) -> None:
    unet.requires_grad_(False)
    unet.eval()
