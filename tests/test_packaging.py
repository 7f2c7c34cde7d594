"""The distribution installs the four trust-domain folders under one namespace, and nothing generic."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE_FOLDERS = {
    "secure_mor": "secure_mor",
    "client": "secure_mor/client",
    "server": "secure_mor/server",
    "crypto": "secure_mor/crypto",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (built,) = out.glob("secure_mor-*.whl")
    return zipfile.ZipFile(built)


def expected_packages() -> set[str]:
    """Every folder with an __init__.py under the four roots, as its installed path."""
    found = set()
    for folder, installed in ROLE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(str(Path(installed) / relative) if str(relative) != "." else installed)
    return found


def test_wheel_holds_every_package_under_secure_mor(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    packages = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
    assert expected_packages() <= packages, f"missing from the wheel: {expected_packages() - packages}"
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"secure_mor"}, f"only secure_mor may be a top-level package, found {top_level}"
    assert "secure_mor/py.typed" in names


def test_wheel_declares_the_console_script(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "secure-mor = secure_mor.cli:main" in wheel.read(entry_points).decode()


def test_role_packages_import_from_their_folders_and_generic_names_do_not(tmp_path: Path) -> None:
    # In a fresh interpreter outside the repository, as a user's program would see the installation.
    probe = (
        "import importlib.util, json\n"
        "names = ['secure_mor', 'secure_mor.client', 'secure_mor.server', 'secure_mor.crypto',\n"
        "         'client', 'server', 'crypto']\n"
        "specs = {n: importlib.util.find_spec(n) for n in names}\n"
        "print(json.dumps({n: s.origin if s else None for n, s in specs.items()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    origins = json.loads(result.stdout)
    for folder, installed in ROLE_FOLDERS.items():
        assert Path(origins[installed.replace("/", ".")]).parent == ROOT / folder
    for generic in ("client", "server", "crypto"):
        assert origins[generic] is None, f"a top-level '{generic}' module is importable"


def test_torchvision_is_never_a_dependency() -> None:
    for name in ("pyproject.toml", "constraints.txt"):
        lines = (ROOT / name).read_text().splitlines()
        assert not [line for line in lines if line.strip().strip('"').lower().startswith("torchvision")]


def test_client_and_server_never_import_each_other_and_crypto_imports_neither() -> None:
    rules = {
        "client": ("secure_mor.server",),
        "server": ("secure_mor.client",),
        "crypto": ("secure_mor.client", "secure_mor.server"),
    }
    for folder, forbidden in rules.items():
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text()
            for name in forbidden:
                assert f"import {name}" not in text, f"{source} imports {name}"
                assert f"from {name}" not in text, f"{source} imports from {name}"
