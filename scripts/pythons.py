"""Which CPython interpreters the test matrix runs on (used by scripts/test.sh).

One interpreter per minor version >= 3.11, found in this order:

1. `CONVEYOR_PYTHONS`, if set: a space-separated list of interpreter paths or versions
   ("3.12", "3.13.0", "/usr/bin/python3.12"); a version is looked up under pyenv's versions
   directory, then as `pythonX.Y` on PATH. Only these run (plus nothing else), so a developer
   can run one version quickly: `CONVEYOR_PYTHONS=3.13 bash scripts/test.sh`.
2. Otherwise the default interpreter (the one running this script), then every
   `$(pyenv root)/versions/3.N.P` and every `python3.N` on PATH; for a minor version found
   more than once the default interpreter wins, else the highest patch release.

Prints one line per interpreter to run, `run <X.Y.Z> <path>`, one line per supported minor
version it will not run, `missing <X.Y> not-found|not-requested`, so the caller can say what
went untested, and `unusable <name>` for a CONVEYOR_PYTHONS entry that is not an interpreter
>= 3.11.
Why a script and not shell: version parsing and de-duplication are clearer here, and the
default interpreter is guaranteed to exist (it runs this file).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: The CPython minor versions conveyor supports (pyproject's requires-python, up to the newest
#: release). A machine without one of them reports it as not tested.
SUPPORTED = ((3, 11), (3, 12), (3, 13), (3, 14))
MINIMUM = (3, 11)


def _version_of(python: str) -> tuple[int, int, int] | None:
    """The interpreter's version, or None if it does not run (a pyenv shim for a version
    that is not installed exits non-zero)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True, text=True, timeout=30, check=True).stdout.split()
        return (int(out[0]), int(out[1]), int(out[2]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _pyenv_versions() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                  timeout=30, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = None
    if not root:
        return None
    versions = Path(root) / "versions"
    return versions if versions.is_dir() else None


def _candidates() -> list[str]:
    found = []
    versions = _pyenv_versions()
    if versions is not None:
        for entry in sorted(versions.iterdir()):
            # CPython releases only ("3.12.1"); not "3.13-dev", "pypy3.10-...", venvs.
            if re.fullmatch(r"3\.\d+\.\d+", entry.name):
                python = entry / "bin" / "python3"
                if python.exists():
                    found.append(str(python))
    for minor in range(MINIMUM[1], 30):
        path = shutil.which(f"python3.{minor}")
        if path:
            found.append(path)
    return found


def _resolve(name: str) -> str | None:
    """An interpreter path for a CONVEYOR_PYTHONS entry (a path or a version)."""
    if os.sep in name:
        return name if os.path.exists(name) else None
    if not re.fullmatch(r"3\.\d+(\.\d+)?", name):
        return shutil.which(name)
    versions = _pyenv_versions()
    if versions is not None:
        matches = sorted((p for p in versions.glob(f"{name}*")
                          if re.fullmatch(re.escape(name) + r"(\.\d+)?", p.name)),
                         key=lambda p: tuple(int(x) for x in p.name.split(".")))
        if matches:
            return str(matches[-1] / "bin" / "python3")
    minor = ".".join(name.split(".")[:2])
    return shutil.which(f"python{minor}")


def choose() -> tuple[list[tuple[tuple[int, int, int], str]], list[tuple[tuple[int, int], str]]]:
    chosen: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
    requested = os.environ.get("CONVEYOR_PYTHONS", "").split()
    if requested:
        for name in requested:
            path = _resolve(name)
            version = _version_of(path) if path else None
            if version is None or version[:2] < MINIMUM:
                print(f"unusable {name}", flush=True)
                continue
            chosen.setdefault(version[:2], (version, path))
    else:
        default = sys.executable
        chosen[sys.version_info[:2]] = (tuple(sys.version_info[:3]), default)
        for path in _candidates():
            version = _version_of(path)
            if version is None or version[:2] < MINIMUM:
                continue
            current = chosen.get(version[:2])
            if current is None or (current[1] != default and version > current[0]):
                chosen[version[:2]] = (version, path)
    runs = [chosen[minor] for minor in sorted(chosen)]
    why = "not-requested" if requested else "not-found"
    missing = [(minor, why) for minor in SUPPORTED if minor not in chosen]
    return runs, missing


def main() -> None:
    runs, missing = choose()
    for version, path in runs:
        print("run", ".".join(map(str, version)), path)
    for minor, why in missing:
        print("missing", ".".join(map(str, minor)), why)


if __name__ == "__main__":
    main()
