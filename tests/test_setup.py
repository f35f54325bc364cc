"""The set-up itself: the README's two commands install every Debian package the code needs.

``tools/system-packages.txt`` is the one list of system packages. These tests fail when

* ``make install`` (so ``make test`` and ``make book``) stops running the installer (it once lost its
  recipe in a merge and CI stayed green only because the packages had been installed by hand);
* the installer would not install a listed package on a machine that has none of them;
* the code starts reading a system path or calling a command that no listed package provides;
* the list says a package provides a path that, on this machine, another package owns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "tools" / "install_system_deps.sh"
MANIFEST = ROOT / "tools" / "system-packages.txt"
#: Where the code that runs on a user's machine lives (scanned for system paths and commands).
CODE_DIRS = ("book/tsmbook", "tsmlib", "tools", "tests", "notebooks", "book/_ext", "benchmarks", ".ci")
SYSTEM_PATH = re.compile(r"(?<![\w./])/(?:usr|opt|etc|var)/[\w.+-]+(?:/[\w.+-]+)*")
WHICH_CALL = re.compile(r"""shutil\.which\(\s*["']([\w.+-]+)["']""")


def _manifest() -> list[tuple[str, str]]:
    """(package, what it provides) for every line of tools/system-packages.txt."""
    rows = []
    for line in MANIFEST.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        assert len(fields) >= 3, f"system-packages.txt: want 'package provides used-by', got {line!r}"
        rows.append((fields[0], fields[1]))
    return rows


def _code_files():
    for d in CODE_DIRS:
        base = ROOT / d
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for f in files:
            if f.is_file() and f.suffix in {".py", ".ipynb", ".sh", ""} and "__pycache__" not in f.parts:
                yield f


def _system_references() -> tuple[set[str], set[str]]:
    """System paths and commands (``shutil.which``) the code refers to, shebangs and comments aside."""
    paths, commands = set(), set()
    for f in _code_files():
        if f in (MANIFEST, Path(__file__).resolve()):
            continue
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            continue
        for line in text.splitlines():
            if line.startswith("#!"):
                continue
            paths.update(p.rstrip(".") for p in SYSTEM_PATH.findall(line))
            commands.update(WHICH_CALL.findall(line))
    return paths, commands


def _fake_dpkg(tmp_path: Path, installed: set[str]) -> dict:
    """An environment whose ``dpkg-query`` reports only ``installed`` as installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dpkg-query"
    cases = "".join(f'    {p}) echo -n "install ok installed"; exit 0 ;;\n' for p in sorted(installed))
    script.write_text(f'#!/usr/bin/env bash\npkg="${{@: -1}}"\ncase "$pkg" in\n{cases}esac\nexit 1\n')
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_manifest_lists_each_package_once():
    names = [p for p, _ in _manifest()]
    assert names, "tools/system-packages.txt lists no package"
    assert len(names) == len(set(names)), f"a package is listed twice: {names}"
    listed = subprocess.run(["bash", str(INSTALLER), "--list"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == names, "the installer must read its list from tools/system-packages.txt"


@pytest.mark.parametrize("target", ["install", "test", "book"])
def test_make_target_runs_the_system_package_installer(target):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "tools/install_system_deps.sh" in dry.stdout, (
        f"`make {target}` no longer runs tools/install_system_deps.sh:\n{dry.stdout}")


def test_installer_would_install_every_listed_package_on_a_bare_machine(tmp_path):
    env = _fake_dpkg(tmp_path, installed=set())
    dry = subprocess.run(["bash", str(INSTALLER), "--dry-run"], capture_output=True, text=True, env=env, check=True)
    command = re.search(r"apt-get install -y (.+)$", dry.stdout, re.M)
    assert command, f"dry run printed no install command: {dry.stdout!r}"
    assert command.group(1).split() == [p for p, _ in _manifest()]


def test_installer_installs_only_what_is_missing(tmp_path):
    names = [p for p, _ in _manifest()]
    env = _fake_dpkg(tmp_path, installed=set(names[:1]))
    dry = subprocess.run(["bash", str(INSTALLER), "--dry-run"], capture_output=True, text=True, env=env, check=True)
    command = re.search(r"apt-get install -y (.+)$", dry.stdout, re.M)
    assert command and command.group(1).split() == names[1:]
    (tmp_path / "all").mkdir()
    everything = _fake_dpkg(tmp_path / "all", installed=set(names))
    dry = subprocess.run(["bash", str(INSTALLER), "--dry-run"], capture_output=True, text=True, env=everything,
                         check=True)
    assert "apt-get" not in dry.stdout and "all present" in dry.stdout


def test_installer_without_root_stops_with_the_exact_command(tmp_path):
    env = _fake_dpkg(tmp_path, installed=set())
    for tool, body in {"id": 'echo 1000', "sudo": "exit 1"}.items():
        (tmp_path / "bin" / tool).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    res = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert "apt-get update && apt-get install -y " + " ".join(p for p, _ in _manifest()) in res.stderr
    res = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True,
                         env={**env, "TSM_SKIP_SYSTEM_DEPS": "1"})
    assert res.returncode == 0 and "going on without them" in res.stderr


def test_every_system_path_and_command_the_code_uses_is_provided_by_a_listed_package():
    provided = [what for _, what in _manifest()]
    prefixes = [p for p in provided if p.startswith("/")]
    commands = {p.split(":", 1)[1] for p in provided if p.startswith("cmd:")}
    paths, used_commands = _system_references()
    assert paths or used_commands, "the scan found nothing: the pattern is broken"
    unprovided = sorted(p for p in paths if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in prefixes))
    assert not unprovided, (
        f"the code uses system paths that no package in tools/system-packages.txt provides: {unprovided}")
    assert used_commands <= commands, (
        f"the code calls commands that no listed package provides: {sorted(used_commands - commands)}")


def test_the_scan_finds_what_it_must():
    """The two references that motivated the list are found (so the check above can fail)."""
    paths, commands = _system_references()
    assert "/usr/share/datasets/fashion-mnist" in paths
    assert "chromium" in commands


def test_listed_packages_own_what_they_are_said_to_provide():
    """Checked against dpkg where the package is installed (CI installs them first)."""
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian machine")
    checked = 0
    for package, what in _manifest():
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        if "install ok installed" not in status.stdout:
            continue
        path = shutil.which(what[4:]) if what.startswith("cmd:") else what
        assert path, f"{package} is installed but provides no {what}"
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
        assert owner.returncode == 0 and owner.stdout.split(":")[0].split(",")[0].strip() == package, (
            f"{what} is owned by {owner.stdout.strip() or 'no package'}, not {package}")
        checked += 1
    if checked == 0:
        pytest.skip("none of the listed packages is installed here")


def test_no_merge_conflict_markers_in_tracked_files():
    """A merge that leaves `<<<<<<<` / `>>>>>>>` lines in a notebook, a page or a parameter file would
    still import; this catches it."""
    import re
    import subprocess

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    marker = re.compile(r"^(<{7}|>{7})( |$)", re.M)
    text_suffixes = {".py", ".md", ".ipynb", ".yaml", ".yml", ".txt", ".sh", ".bib", ".cfg", ".toml", ""}
    bad = []
    for name in files:
        path = root / name
        if path.suffix not in text_suffixes or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        try:
            if marker.search(path.read_text(encoding="utf-8")):
                bad.append(name)
        except UnicodeDecodeError:
            continue
    assert not bad, f"merge conflict markers left in: {bad}"
