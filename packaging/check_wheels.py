"""Can every runtime dependency be installed on a Raspberry Pi without a compiler?

For each requirement in pyproject.toml's `[project.dependencies]` (and the `gpio`
extra) and each Pi architecture, ask pip for a binary wheel for CPython 3.11:

1. `pip download REQ --no-deps --only-binary=:all: --platform ... --python-version 3.11
   --implementation cp` from PyPI: a `py3-none-any` wheel is pure Python (fine
   everywhere), any other wheel is a binary for that platform;
2. when PyPI has none, the same against piwheels.org (`linux_armv7l` / `linux_aarch64`
   wheels built on Raspberry Pi OS), noted separately because it is an extra index;
3. when neither has one, whether an sdist exists (`pip download --no-binary=:all:`):
   the package then builds on the Pi, which needs gcc and python3-dev (and Rust for
   some packages).

Prints a Markdown table (the one in docs/install.md). Run:
`python3 packaging/check_wheels.py` (needs network; takes about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/simple"
PIWHEELS = "https://www.piwheels.org/simple"

# Debian names the architectures arm64 and armhf; pip's platform tags say aarch64 and
# armv7l. manylinux_2_36 covers Bookworm's glibc 2.36 (pip accepts older tags too).
PLATFORMS = {
    "arm64 (aarch64)": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_36_aarch64",
                        "linux_aarch64"],
    "armhf (armv7l)": ["manylinux2014_armv7l", "manylinux_2_31_armv7l", "manylinux_2_36_armv7l",
                       "linux_armv7l"],
}  # fmt: skip


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The runtime requirements: dependencies plus the named extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def _pip_download(args: list[str]) -> Path | None:
    """Run `pip download --no-deps ARGS` into a fresh folder; the file, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        # --isolated: ignore pip.conf and PIP_* (local find-links, mirrors, constraints),
        # so the answer is about the named index alone.
        cmd = [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--no-cache-dir", "-d", tmp, *args]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        files = list(Path(tmp).iterdir())
        if done.returncode != 0 or not files:
            return None
        return Path(files[0].name)


def binary_wheel(req: str, platforms: list[str], index: str) -> Path | None:
    """The wheel pip would pick for CPython 3.11 on these platforms, or None."""
    args = [req, "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            "--index-url", index]  # fmt: skip
    for platform in platforms:
        args += ["--platform", platform]
    return _pip_download(args)


def has_sdist(req: str) -> Path | None:
    """The sdist on PyPI, or None (pip prepares its metadata: may take a few seconds)."""
    # --no-binary for this package only: :all: would build its build tools from source too.
    name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
    return _pip_download([req, f"--no-binary={name}", "--index-url", PYPI])


def describe(wheel: Path) -> str:
    """`pure Python` or `wheel (tag)` from a wheel file name."""
    name = wheel.name.removesuffix(".whl")
    version, platform = name.split("-")[1], name.split("-")[-1]
    if platform == "any":
        return f"pure Python {version}"
    return f"wheel {version} ({platform.split('.')[0]})"


def check(req: str, platforms: list[str], piwheels: bool) -> str:
    """One cell of the table."""
    wheel = binary_wheel(req, platforms, PYPI)
    if wheel is not None:
        return describe(wheel)
    if piwheels:
        wheel = binary_wheel(req, platforms, PIWHEELS)
        if wheel is not None:
            return f"piwheels only: {describe(wheel)}"
    sdist = has_sdist(req)
    if sdist is not None:
        return f"**sdist only**: builds on the Pi ({sdist.name})"
    return "**NOT AVAILABLE**"


def piwheels_reachable() -> bool:
    """Whether piwheels.org answers (it is often slow or blocked behind firewalls)."""
    try:
        with urllib.request.urlopen(f"{PIWHEELS}/six/", timeout=15) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="gpio", help="comma-separated extras to include")
    parser.add_argument("--no-piwheels", action="store_true", help="do not ask piwheels.org")
    args = parser.parse_args(argv)
    reqs = requirements(ROOT / "pyproject.toml", [e for e in args.extras.split(",") if e])
    piwheels = not args.no_piwheels and piwheels_reachable()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    print(f"Checked {today} for CPython 3.11; piwheels.org "
          f"{'reachable' if piwheels else 'not reachable (not asked)'}.\n")  # fmt: skip
    print("| Requirement | " + " | ".join(PLATFORMS) + " |")
    print("|---|" + "---|" * len(PLATFORMS))
    missing = 0
    for req in reqs:
        cells = [check(req, platforms, piwheels) for platforms in PLATFORMS.values()]
        missing += sum("NOT AVAILABLE" in cell for cell in cells)
        print(f"| `{req}` | " + " | ".join(cells) + " |", flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
