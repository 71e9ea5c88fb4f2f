"""CMake flags for building llama-cpp-python portably: owns the choice of CPU instruction sets.

Why this exists: llama.cpp's default build uses `-march=native`, which trusts CPUID. Some machines
advertise AMX in CPUID while the kernel has not enabled its register state, so the first AMX matmul
faults (SIGSEGV in `ggml_backend_amx_mul_mat`). We therefore turn native detection off and enable
only the instruction sets the *kernel* reports as usable in /proc/cpuinfo, and never AMX.

It is run as a plain script by the Makefile before the package is installed, so it imports nothing
from the project. It does not build anything itself.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"

# GGML option -> every /proc/cpuinfo flag it needs. GGML_AVX512 compiles with
# -mavx512f/cd/vl/dq/bw, so all of them must be present.
X86_OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
}
# Never on: see the module docstring.
ALWAYS_OFF = ("GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU in a /proc/cpuinfo text.

    >>> sorted(cpu_flags("processor : 0\\nflags : fpu avx avx2\\n\\nprocessor : 1\\nflags : fpu\\n"))
    ['avx', 'avx2', 'fpu']
    >>> cpu_flags("")
    set()
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cmake_args(flags: set[str], machine: str) -> str:
    """CMAKE_ARGS for llama-cpp-python given the kernel's CPU flags and the machine type.

    >>> cmake_args({"avx", "avx2", "fma", "f16c", "amx_tile"}, "x86_64")
    '-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF'
    >>> cmake_args(set(), "aarch64")
    '-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF'
    """
    args = [f"-D{opt}=OFF" for opt in ALWAYS_OFF]
    if machine.lower() in ("x86_64", "amd64", "i686", "i386"):
        for opt, needs in X86_OPTIONS.items():
            args.append(f"-D{opt}={'ON' if set(needs) <= flags else 'OFF'}")
    return " ".join(args)


def wheel_key(args: str, version: str = LLAMA_CPP_VERSION) -> str:
    """A cache key for a built wheel, so a wheel built with other flags is never reused.

    >>> wheel_key("-DGGML_AVX=ON") != wheel_key("-DGGML_AVX=OFF")
    True
    """
    digest = hashlib.sha256(f"{version} {args}".encode()).hexdigest()[:12]
    return f"{version}-{digest}"


def main(argv: list[str]) -> int:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    args = cmake_args(cpu_flags(cpuinfo), platform.machine())
    print(wheel_key(args) if argv[1:] == ["--key"] else args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
