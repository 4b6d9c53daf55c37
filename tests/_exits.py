"""Shared check of the CLI's bad-input contract: exit code 2, one line on stderr naming the problem, nothing written."""

import pytest

from escape.cli import main


def assert_run_exits_2(experiment: str, sets: list[str], needle: str, tmp_path, capsys) -> None:
    args = ["run", experiment, "--out", str(tmp_path / "o"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()
