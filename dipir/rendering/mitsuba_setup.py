"""Import Mitsuba once per process with the right variant.

CPU machines use `llvm_ad_rgb`, which needs LLVM >= 16 at run time: Debian's stock LLVM 15 aborts at
the first render, so we point Dr.Jit at the libLLVM 19 that `make setup` installs. CUDA machines use
`cuda_ad_rgb`.
"""

from __future__ import annotations

import glob
import os

from dipir.errors import DipirError

_LLVM_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1",
    "/usr/lib/x86_64-linux-gnu/libLLVM-19.so",
    "/usr/lib/aarch64-linux-gnu/libLLVM.so.19.1",
    "/usr/lib/llvm-19/lib/libLLVM.so.1",
    "/usr/lib/llvm-19/lib/libLLVM-19.so",
)


def find_libllvm() -> str | None:
    """The path of a libLLVM >= 19 (DRJIT_LIBLLVM_PATH wins when set)."""
    env = os.environ.get("DRJIT_LIBLLVM_PATH")
    if env:
        return env
    for path in _LLVM_CANDIDATES:
        if os.path.exists(path):
            return path
    found = sorted(glob.glob("/usr/lib/*/libLLVM*.so.2[0-9]*") + glob.glob("/usr/lib/*/libLLVM.so.19*"))
    return found[-1] if found else None


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def default_variant() -> str:
    return "cuda_ad_rgb" if cuda_available() else "llvm_ad_rgb"


def load_mitsuba(variant: str | None = None):
    """Return the `mitsuba` module with a variant set; later calls keep the first variant unless
    another is asked for explicitly."""
    llvm = find_libllvm()
    if llvm and "DRJIT_LIBLLVM_PATH" not in os.environ:
        os.environ["DRJIT_LIBLLVM_PATH"] = llvm
    import mitsuba as mi

    want = variant or os.environ.get("DIPIR_MITSUBA_VARIANT") or mi.variant() or default_variant()
    if mi.variant() != want:
        if want.startswith("llvm") and not llvm:
            raise DipirError(
                "Mitsuba's LLVM variant needs libLLVM 19 (apt-get install libllvm19, or set "
                "DRJIT_LIBLLVM_PATH)", field="DRJIT_LIBLLVM_PATH")
        try:
            mi.set_variant(want)
        except (ImportError, AttributeError) as err:
            raise DipirError(f"Mitsuba variant {want!r} is unavailable ({err})", field="variant") from None
    return mi
