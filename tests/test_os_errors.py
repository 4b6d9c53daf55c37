"""OS errors and damaged run directories are input errors too: `escape run` (and `escape train`) exit with
code 2 and one line on stderr naming the file and what to do, lose nothing already written, and the same
command resumes once the cause is removed, to the results of an uninterrupted run."""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from escape.cli import main

# fig6's smoke preset, shrunk: 4 optimizers x 2 sharpness values = 8 cells of 8 particles.
SETS = ["--set", "preset=smoke", "--set", "run.sharpness=[3.0, 4.0]", "--set", "run.n_particles=8"]
N_CELLS = 8
# A saddle run of one cell: SGD only, the discrete method, two horizons.
SADDLE_TOML = """name = "saddle-tiny"
kind = "saddle"
[landscape]
abs_hessian = [0.01, 0.1]
[run]
batch_size = 1
n_particles = 8
horizons = [1, 2]
table_horizons = [2]
methods = ["discrete"]
[optimizers.sgd]
optimizer = "sgd"
learning_rate = 0.001
"""


def _run_args(out, experiment="fig6", sets=SETS):
    return ["run", experiment, "--out", str(out), "--quiet", *sets]


def _train_args(out):
    return ["train", "--out", str(out), "--epochs", "1", "--train-examples", "64", "--test-examples", "64",
            "--no-sharpness", "--width", "4", "--no-compilation-cache", "--quiet"]


def _exits_2(argv, capsys) -> str:
    """Run the CLI in-process; it must exit with 2 and one line on stderr, ``escape: error: ...``; the line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2, (e.value.code, err)
    assert len(lines) == 1 and lines[0].startswith("escape: error: ") and "Traceback" not in err, err
    return lines[0]


def _files(d: Path) -> dict:
    """Every file under ``d`` (hidden ones too) and its bytes; directories as ``None``."""
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(Path(d).rglob("*"))}


def _inodes(d: Path) -> dict:
    """Cell file -> inode: an atomic rewrite gives a new inode, so equal inodes mean a cell was not written again."""
    return {p.name: p.stat().st_ino for p in (Path(d) / "cells").glob("*.npz")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run: the results every interrupted and resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    main(_run_args(out))
    assert len(list((out / "cells").glob("*.npz"))) == N_CELLS
    return out


def _same_results(out: Path, reference: Path) -> None:
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()
    assert (out / "fit.csv").read_bytes() == (reference / "fit.csv").read_bytes()
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(p.name for p in (reference / "cells").iterdir())
    assert not list(out.rglob("*.tmp"))


# (a) an --out that cannot be created ----------------------------------------------------------------------------


def _read_only_dir(parent: Path, monkeypatch) -> None:
    """Make ``parent`` refuse new entries: chmod, or (as root, whom chmod does not stop) ``os.mkdir`` refusing."""
    parent.chmod(0o555)
    try:
        (parent / ".probe").mkdir()
    except PermissionError:
        return
    (parent / ".probe").rmdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == parent:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


def test_out_under_a_read_only_directory_then_resume(tmp_path, capsys, monkeypatch, reference):
    parent = tmp_path / "ro"
    parent.mkdir()
    out = parent / "run"
    with monkeypatch.context() as m:
        _read_only_dir(parent, m)
        line = _exits_2(_run_args(out), capsys)
        assert f"--out: {out}: Permission denied" in line, line
        line = _exits_2(_train_args(parent / "train"), capsys)
        assert "Permission denied" in line and str(parent / "train") in line, line
    parent.chmod(0o755)
    assert list(parent.iterdir()) == []
    main(_run_args(out))  # the cause removed, the same command runs
    _same_results(out, reference)


# (b) a regular file in the way ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "file/run", "file/a/run"])
def test_a_regular_file_in_the_way(where, tmp_path, capsys):
    (tmp_path / "file").write_text("keep me\n")
    out = tmp_path / where
    for argv in (_run_args(out), _train_args(out)):
        line = _exits_2(argv, capsys)
        assert ("is a file" if where == "file" else "Not a directory") in line and str(tmp_path / "file") in line, line
    assert (tmp_path / "file").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cells_directory_is_a_file_then_resume(tmp_path, capsys, reference):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(reference / "manifest.json", out / "manifest.json")
    (out / "cells").write_text("not a directory\n")
    before = _files(out)
    line = _exits_2(_run_args(out), capsys)
    assert line == f"escape: error: {out / 'cells'}: Not a directory", line
    assert _files(out) == before
    (out / "cells").unlink()
    main(_run_args(out))
    _same_results(out, reference)


# (c) a full disk part-way through a run -------------------------------------------------------------------------


def test_full_disk_part_way_then_resume(tmp_path, capsys, monkeypatch, reference):
    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # every atomic write ends in fsync: the 6th (the 3rd cell file) finds the disk full
        calls.append(fd)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        line = _exits_2(_run_args(out), capsys)
    assert f"{out / 'cells'}" in line and ".npz: No space left on device; finished work is kept" in line, line
    assert "rerun the same command to resume" in line
    kept = _inodes(out)
    assert 1 <= len(kept) < N_CELLS, kept
    assert not list(out.rglob("*.tmp"))  # the torn temporary file is removed
    main(_run_args(out))  # space freed: the same command resumes
    _same_results(out, reference)
    assert {k: v for k, v in _inodes(out).items() if k in kept} == kept  # finished cells were not computed again


# (d) a run directory whose files were damaged or edited ---------------------------------------------------------


def _half(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 3: len(data) // 3 + 8] = b"edited!!"
    p.write_bytes(bytes(data))


def _as_directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


CELL_DAMAGE = {
    "empty": (lambda p: p.write_bytes(b""), "EOFError"),
    "half": (_half, "BadZipFile"),
    "text": (lambda p: p.write_text("rate = 0.5\n"), "ValueError"),
    "edited": (_flip, "BadZipFile"),
    "npy": (lambda p: np.save(p.open("wb"), np.arange(3)), "not an .npz archive"),
    "other-arrays": (lambda p: np.savez(p.open("wb"), rate=np.arange(3)), "no array 'first_passage'"),
    "directory": (_as_directory, "a directory"),
}


@pytest.mark.parametrize("damage", list(CELL_DAMAGE))
def test_damaged_cell_file_is_named_and_kept(damage, tmp_path, capsys, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    cell = out / "cells" / "momentum__k3.npz"
    hurt, reason = CELL_DAMAGE[damage]
    hurt(cell)
    before = _files(out)
    line = _exits_2(_run_args(out), capsys)
    assert line.startswith(f"escape: error: {cell}: not a readable cell file (") and reason in line, line
    assert line.endswith("delete it and rerun the same command to recompute that cell"), line
    assert _files(out) == before  # nothing deleted or rewritten, the damaged file included
    if damage == "directory":
        cell.rmdir()
    else:
        cell.unlink()
    others = _inodes(out)
    main(_run_args(out))  # recomputes that cell only
    _same_results(out, reference)
    assert {k: v for k, v in _inodes(out).items() if k != cell.name} == others


def test_damaged_cell_file_of_another_kind(tmp_path, capsys):
    """The saddle experiment reads its cells through the same check."""
    toml = tmp_path / "saddle-tiny.toml"
    toml.write_text(SADDLE_TOML)
    out = tmp_path / "saddle"
    main(_run_args(out, str(toml), []))
    expected = (out / "results.csv").read_bytes()
    cell = out / "cells" / "sgd__discrete.npz"
    _half(cell)
    before = _files(out)
    line = _exits_2(_run_args(out, str(toml), []), capsys)
    assert f"{cell}: not a readable cell file (BadZipFile" in line and "delete it" in line, line
    assert _files(out) == before
    cell.unlink()
    main(_run_args(out, str(toml), []))
    assert (out / "results.csv").read_bytes() == expected


MANIFEST_DAMAGE = {
    "empty": (lambda p: p.write_bytes(b""), "JSONDecodeError"),
    "half": (_half, "JSONDecodeError"),
    "binary": (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "UnicodeDecodeError"),
    "a list": (lambda p: p.write_text("[1, 2]\n"), 'no "config" table'),
    "config not a table": (lambda p: p.write_text('{"config": [1]}\n'), 'no "config" table'),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_damaged_manifest_is_named_and_kept(damage, tmp_path, capsys, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    man = out / "manifest.json"
    hurt, reason = MANIFEST_DAMAGE[damage]
    hurt(man)
    before = _files(out)
    line = _exits_2(_run_args(out), capsys)
    assert line.startswith(f"escape: error: --out: {man} is damaged (") and reason in line, line
    assert "restore it, or delete it if" in line and "or choose another --out" in line, line
    assert _files(out) == before
    line = _exits_2(["fit", str(out)], capsys)  # the commands that read a run directory say the same
    assert f"cannot read {man} (" in line and reason in line and "restore it" in line, line
    assert _files(out) == before
    man.unlink()  # the same command's directory: deleting the manifest resumes it
    cells = _inodes(out)
    main(_run_args(out))
    _same_results(out, reference)
    assert _inodes(out) == cells
    assert json.loads(man.read_text())["config"] == json.loads((reference / "manifest.json").read_text())["config"]


def test_manifest_edited_to_another_config_is_refused(tmp_path, capsys, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    man = out / "manifest.json"
    obj = json.loads(man.read_text())
    obj["config"]["run"]["n_particles"] = 9
    man.write_text(json.dumps(obj))
    before = _files(out)
    line = _exits_2(_run_args(out), capsys)
    assert "holds a run with a different config (run.n_particles: 9 in that run, 8 in this one)" in line, line
    assert _files(out) == before


@pytest.mark.parametrize("name", ["results.csv", "fit.csv"])
def test_damaged_table_is_rebuilt_from_the_cells(name, tmp_path, capsys, reference):
    """results.csv and fit.csv are outputs every run rebuilds from the cells (the data): a truncated one is
    written again, and nothing else changes."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    _half(out / name)
    cells = _inodes(out)
    main(_run_args(out))
    _same_results(out, reference)
    assert _inodes(out) == cells


@pytest.mark.parametrize("name, data, needle", [
    ("checkpoint.json", b"\xff\xfe{", "checkpoint: cannot read"),       # not UTF-8
    ("checkpoint.json", b"", "checkpoint: cannot read"),                # empty
    ("metrics.json", b"", "History.load: cannot read"),                 # empty
    ("metrics.json", b"\x80\x81", "History.load: cannot read"),         # not UTF-8
])
def test_damaged_training_run_files_are_one_line(name, data, needle, tmp_path, capsys):
    """`escape train` into a run directory whose checkpoint record or metrics file is damaged: exit 2, one line
    naming the file, nothing trained."""
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(data)
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(out), "--epochs", "1", "--train-examples", "64", "--batch-size", "32",
              "--no-sharpness", "--no-compilation-cache", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and name in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [name]
