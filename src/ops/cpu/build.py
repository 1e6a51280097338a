"""Compile the C++ kernels of this package into shared libraries, once per source version and machine.

Libraries go to `<repo>/build/custom_ops/<name>-<hash>.so`; the hash covers the source, the package's headers,
the compiler command and the CPU (the code is compiled for the machine it runs on), so an edited source or
another CPU gets a fresh build and a stale library is never loaded. Builds are written atomically (src/infra/fileio.py),
so concurrent processes and interrupted builds never leave a half-written library behind; a new build deletes the
older ones of the same kernel.
"""

import hashlib
import platform
import shutil
import subprocess
import threading
from pathlib import Path

from src.infra.fileio import atomic_path

SOURCE_DIR = Path(__file__).resolve().parent
BUILD_DIR = SOURCE_DIR.parents[2] / "build" / "custom_ops"
COMPILER = "g++"
COMPILE_FLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-ffp-contract=off")

# Kernels that call oneDNN's sgemm link the libdnnl that MindSpore's wheel ships (and loads for its own CPU kernels).
ONEDNN_KERNELS = frozenset({"deform_sampling", "winograd_conv"})

_lock = threading.Lock()
_built: dict[str, Path] = {}


def _cpu_identity() -> str:
    """CPU model and feature flags (what -march=native compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout


def _link_flags(name: str) -> tuple[str, ...]:
    if name not in ONEDNN_KERNELS:
        return ()
    import mindspore  # noqa: PLC0415 (only the oneDNN kernels need the wheel's path)

    lib = Path(mindspore.__file__).resolve().parent / "lib"
    return (f"-L{lib}", "-l:libdnnl.so.2", f"-Wl,-rpath,{lib}")


def library_path(name: str) -> Path:
    """Path of the compiled `<name>.cc` from this package, building it first if needed.

    Raises RuntimeError when g++ is missing or the compilation fails (with the compiler's message).
    """
    with _lock:
        if name in _built:
            return _built[name]
        source = SOURCE_DIR / f"{name}.cc"
        compiler = shutil.which(COMPILER)
        if compiler is None:
            raise RuntimeError(
                f"The CPU kernels in {SOURCE_DIR} need the C++ compiler '{COMPILER}' with OpenMP "
                "(Debian/Ubuntu: apt-get install g++), which was not found on PATH."
            )
        digest = hashlib.sha256()
        headers = [header.read_bytes() for header in sorted(SOURCE_DIR.glob("*.h"))]
        flags = (*COMPILE_FLAGS, *_link_flags(name))
        for part in (source.read_bytes(), *headers, " ".join(flags).encode(),
                     _compiler_version(compiler).encode(), _cpu_identity().encode()):
            digest.update(part)
            digest.update(b"\0")
        target = BUILD_DIR / f"{name}-{digest.hexdigest()[:16]}.so"
        if not target.exists():
            _compile(compiler, source, target, flags)
            for stale in BUILD_DIR.glob(f"{name}-*.so"):  # builds of older sources (a loaded one stays valid)
                if stale != target:
                    stale.unlink(missing_ok=True)
        _built[name] = target
        return target


def _compile(compiler: str, source: Path, target: Path, flags: tuple[str, ...]) -> None:
    with atomic_path(str(target)) as tmp:
        command = [compiler, *flags[: len(COMPILE_FLAGS)], "-o", tmp, str(source), *flags[len(COMPILE_FLAGS):]]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Compiling {source} failed:\n{' '.join(command)}\n{result.stderr}")
