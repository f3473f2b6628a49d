"""packaging/: the systemd units, install.sh / uninstall.sh under --root, build-deb.sh.

What runs here: the installer into a temporary root (a real venv with the real
dependencies, no systemctl, no apt, no user creation), a second run that must change
nothing, the uninstaller, the .deb build and its contents. What does not: a real
systemd starting the sandboxed units, and a real Raspberry Pi.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
UNITS = ("edgestream.service", "edgestream-hub.service")
SCRIPTS = ("install.sh", "uninstall.sh", "build-deb.sh")

# Directives the units may use, by section: a typo (ProtectSytem=) is ignored by
# systemd with only a warning, so it is caught here.
KNOWN = {
    "Unit": {"Description", "Documentation", "Wants", "After", "StartLimitIntervalSec"},
    "Service": {
        "Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "TimeoutStopSec",
        "ExecStart", "ExecReload", "User", "Group", "SupplementaryGroups", "StateDirectory",
        "StateDirectoryMode", "ConfigurationDirectory", "ConfigurationDirectoryMode", "UMask",
        "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "DevicePolicy",
        "DeviceAllow", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "NoNewPrivileges",
        "CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
        "SystemCallErrorNumber", "MemoryMax", "Environment",
    },
    "Install": {"WantedBy"},
}  # fmt: skip


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values; fails on anything else."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(match[1], {})
            continue
        key, sep, value = line.partition("=")
        where = f"{path.name}:{number}"
        assert sep and current is not None, f"{where}: not Key=Value in a section: {raw!r}"
        section = next(name for name, keys in sections.items() if keys is current)
        assert key in KNOWN.get(section, set()), f"{where}: unknown {key}= in [{section}]"
        current.setdefault(key, []).append(value)
    return sections


def installer_paths() -> dict[str, str]:
    """OPT, VENV, ETC and STATE as install.sh defines them (with an empty root)."""
    text = (PACKAGING / "install.sh").read_text(encoding="utf-8")
    found = dict(re.findall(r"^(OPT|VENV|ETC|STATE|UNITS)=(\S+)$", text, re.MULTILINE))
    paths: dict[str, str] = {}
    for name in ("OPT", "VENV", "ETC", "STATE", "UNITS"):
        value = found[name].replace("$R", "")
        paths[name] = value.replace("$OPT", paths.get("OPT", ""))
    return paths


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root with its mtime, size and mode: what a second run may not change."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        entries[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size, info.st_mode)
    return entries


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=check, timeout=300
    )


# --- units ---------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_unit_parses_and_is_sandboxed(unit: str) -> None:
    sections = parse_unit(PACKAGING / "systemd" / unit)
    service = sections["Service"]
    assert set(sections) == {"Unit", "Service", "Install"}
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30s"
    assert one["Restart"] == "always"
    assert one["User"] == one["Group"] == "edgestream"
    assert one["ProtectSystem"] == "strict"
    assert one["NoNewPrivileges"] == "yes"
    assert one["CapabilityBoundingSet"] == ""
    assert one["AmbientCapabilities"] == ""
    assert one["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert one["MemoryDenyWriteExecute"] == "yes"
    assert one["ConfigurationDirectory"] == "edgestream"
    assert one["MemoryMax"] == ("256M" if unit == "edgestream.service" else "1G")
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_paths_match_the_installer_and_the_example_configs() -> None:
    paths = installer_paths()
    assert paths["VENV"] == "/opt/edgestream/venv"
    agent = parse_unit(PACKAGING / "systemd" / "edgestream.service")["Service"]
    hub = parse_unit(PACKAGING / "systemd" / "edgestream-hub.service")["Service"]
    entry = f"{paths['VENV']}/bin/edgestream"
    assert agent["ExecStart"] == [f"{entry} run -c {paths['ETC']}/agent.yaml"]
    assert hub["ExecStart"] == [f"{entry} hub -c {paths['ETC']}/hub.yaml"]
    assert agent["ExecReload"] == [f"{entry} reload -c {paths['ETC']}/agent.yaml"]
    # StateDirectory=X is /var/lib/X: the installer's data folder and the configs' paths.
    assert f"/var/lib/{agent['StateDirectory'][0]}" == paths["STATE"]
    example = (PACKAGING / "agent.example.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^data_dir: {paths['STATE']}$", example, re.MULTILINE)
    hub_example = (PACKAGING / "hub.example.yaml").read_text(encoding="utf-8")
    assert f"path: /var/lib/{hub['StateDirectory'][0]}/" in hub_example
    # The agent keeps GPIO chips reachable: a closed device policy plus an allow-list.
    assert agent["DevicePolicy"] == ["closed"]
    assert "char-gpiochip rw" in agent["DeviceAllow"]
    assert hub["PrivateDevices"] == ["yes"]


def test_units_pass_systemd_analyze() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    units = [str(PACKAGING / "systemd" / unit) for unit in UNITS]
    done = run(analyze, "verify", "--man=no", *units, check=False)
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        # The venv is not installed on the test machine: the only expected complaint.
        if line.strip() and "/opt/edgestream/venv/bin/edgestream is not executable" not in line
    ]
    assert problems == []


# --- scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_syntax(script: str) -> None:
    run("bash", "-n", PACKAGING / script)
    if shutil.which("shellcheck"):
        run("shellcheck", "-x", PACKAGING / script)


def test_check_wheels_reads_the_runtime_requirements() -> None:
    sys.path.insert(0, str(PACKAGING))
    try:
        import check_wheels
    finally:
        sys.path.remove(str(PACKAGING))
    reqs = check_wheels.requirements(REPO / "pyproject.toml", ["gpio"])
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert reqs == [*project["dependencies"], *project["optional-dependencies"]["gpio"]]
    wheel = Path("orjson-3.10.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert check_wheels.describe(wheel) == "wheel 3.10.0 (manylinux_2_17_aarch64)"
    assert check_wheels.describe(Path("h11-0.16.0-py3-none-any.whl")) == "pure Python 0.16.0"


# --- install.sh under --root ---------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the repository: edits made meanwhile must not look like upgrades."""
    copy = tmp_path_factory.mktemp("src") / "edgestream"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".*cache", "__pycache__", "*.egg-info", "build", "dist", ".venv", "data"
        ),
    )
    return copy


def install(root: Path, source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "bash", source / "packaging" / "install.sh", "--root", root, "--no-apt",
        "--python", sys.executable, *extra, source,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    """A root with agent and hub installed once (a real venv with every dependency)."""
    root = tmp_path_factory.mktemp("root")
    done = install(root, source, "--role", "both")
    assert "no user creation" in done.stdout
    return root


@pytest.mark.slow
def test_install_lays_out_venv_configs_and_units(installed: Path) -> None:
    paths = installer_paths()
    venv = installed / paths["VENV"].lstrip("/")
    etc = installed / paths["ETC"].lstrip("/")
    assert (venv / "bin" / "edgestream").is_file()
    assert (installed / "var/lib/edgestream").is_dir()
    for unit in UNITS:
        installed_unit = installed / "etc/systemd/system" / unit
        assert installed_unit.read_bytes() == (PACKAGING / "systemd" / unit).read_bytes()
    agent_yaml = (etc / "agent.yaml").read_text(encoding="utf-8")
    assert "@DEVICE_ID@" not in agent_yaml
    assert "data_dir: /var/lib/edgestream" in agent_yaml
    assert (etc / "agent.yaml").stat().st_mode & 0o777 == 0o640
    # The venv works, and the configs it was given are valid.
    for config in ("agent.yaml", "hub.yaml"):
        done = run(venv / "bin" / "edgestream", "validate", etc / config)
        assert "valid" in done.stdout


@pytest.mark.slow
def test_second_run_changes_nothing_and_keeps_an_edited_config(
    installed: Path, source: Path
) -> None:
    before = listing(installed)
    done = install(installed, source, "--role", "both")
    assert "pip install" not in done.stdout
    assert listing(installed) == before

    config = installed / "etc/edgestream/agent.yaml"
    edited = config.read_text(encoding="utf-8").replace("interval: 30s", "interval: 1m")
    config.write_text(edited, encoding="utf-8")
    install(installed, source, "--role", "both")
    assert config.read_text(encoding="utf-8") == edited


@pytest.mark.slow
def test_uninstall_keeps_data_unless_purged(installed: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    (root / "var/lib/edgestream/queue.db").write_bytes(b"events not yet sent")
    uninstall = PACKAGING / "uninstall.sh"

    run("bash", uninstall, "--root", root)
    assert not (root / "opt/edgestream").exists()
    assert not any((root / "etc/systemd/system").iterdir())
    assert (root / "etc/edgestream/agent.yaml").is_file()
    assert (root / "var/lib/edgestream/queue.db").is_file()

    run("bash", uninstall, "--root", root)  # again: nothing left to do, no error
    run("bash", uninstall, "--root", root, "--purge")
    assert not (root / "etc/edgestream").exists()
    assert not (root / "var/lib/edgestream").exists()


# --- build-deb.sh --------------------------------------------------------------------


@pytest.mark.slow
def test_build_deb(tmp_path: Path, source: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed (not Debian)")
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.skip("the .deb is built with the system's /usr/bin/python3")
    done = run("bash", source / "packaging" / "build-deb.sh", "--out", tmp_path)
    deb = Path(done.stdout.strip().splitlines()[-1])
    version = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert deb.name == f"edgestream_{version}_{arch}.deb"

    info = run("dpkg-deb", "--info", deb).stdout
    assert "Package: edgestream" in info
    assert f"Version: {version}" in info
    assert "Depends: python3 (>= 3." in info
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert script in info

    contents = run("dpkg-deb", "--contents", deb).stdout
    for path in (
        "./opt/edgestream/venv/bin/edgestream",
        "./lib/systemd/system/edgestream.service",
        "./lib/systemd/system/edgestream-hub.service",
        "./etc/edgestream/agent.yaml",
    ):
        assert re.search(rf" {re.escape(path)}$", contents, re.MULTILINE), path

    tree = tmp_path / "x"
    run("dpkg-deb", "--raw-extract", deb, tree)
    assert (tree / "DEBIAN/conffiles").read_text().split() == [
        "/etc/edgestream/agent.yaml",
        "/etc/edgestream/hub.yaml",
    ]
    entry = tree / "opt/edgestream/venv/bin/edgestream"
    assert entry.read_text().splitlines()[0] == "#!/opt/edgestream/venv/bin/python"
    # The venv finds its packages wherever it is unpacked (pyvenv.cfg is beside it).
    done = run(tree / "opt/edgestream/venv/bin/python", "-m", "agent.cli.main", "--help")
    assert "COMMAND" in done.stdout
    # No path of the build's staging folder survives in the scripts.
    for script in (tree / "opt/edgestream/venv/bin").iterdir():
        if script.is_file() and not script.is_symlink():
            text = script.read_bytes()
            assert b"/tmp" not in text, script.name
