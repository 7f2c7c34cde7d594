"""The command line: --version, --help everywhere, one-line errors with no traceback for user mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from secure_mor import __version__
from secure_mor.cli import app, main


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        paths.append(prefix)
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"secure-mor {__version__}"


def test_commands_of_this_stage_exist() -> None:
    names = {" ".join(path) for path in all_command_paths()}
    assert {"base pretrain", "eval", "data show"} <= names


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out
    assert len(out.strip().splitlines()) > 3
    # Rich markup must not swallow a TOML table's name such as [simulate].
    for swallowed in ("with a  table", "with an  table", "with  and"):
        assert swallowed not in out


def test_bad_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--model", "m", "--limit", "zero"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--limit'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--model", "/no/such/model"], "error: model not found: /no/such/model"),
        (["data", "show", "--config", "/no/such.toml"], "error: config file not found: /no/such.toml"),
        (["data", "show", "--dataset", "/no/such/data"], "error: dataset not found: /no/such/data"),
        (["base", "pretrain", "--steps", "0"], "error: steps: expected an integer ≥ 1, found 0"),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == message or err.strip().startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_invalid_config_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[data.columns]\nquestoin = 'q'\n")
    assert main(["data", "show", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: data.columns.questoin: unknown field" in err


def test_console_script_and_module_run_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "secure-mor"
    for command in ([str(script)], [sys.executable, "-m", "secure_mor"]):
        done = subprocess.run(
            [*command, "eval", "--model", str(tmp_path / "x")], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert "model not found" in done.stderr


def test_data_show_prints_every_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show"]) == 0
    out = capsys.readouterr().out
    for name in (
        "foundation",
        "prompts",
        "calibration",
        "client:color",
        "client:shape",
        "client:yesno",
        "test",
    ):
        assert name in out
