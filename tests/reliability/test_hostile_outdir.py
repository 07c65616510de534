"""Hostile output folders: a folder torchcross did not create, look-alike temporaries, a planted lock file,
a checkpoint folder that cannot be written.

Runs as root ignore file permissions, so an unwritable folder is provoked with a file where the folder
should be, or with a ``mkdir``/``open`` that fails as a read-only folder makes it fail.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from reliability_helpers import no_hang, small_root, tiny_config

from torchcross import _io
from torchcross._io import lock_folder, remove_stale_temp_files
from torchcross.cli import main
from torchcross.cli.demo import demo_config
from torchcross.cli.demo import main as demo_main
from torchcross.protocol import run_protocol
from torchcross.protocol.plan import OUT_DIR_MARKER, check_out_dir

DEAD = "999999999-0123abcd"  # a process id that does not exist, and a temporary's random part


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_root(tmp_path_factory.mktemp("data"))


def _im_pt(root: Path, out: Path, **run: object):
    """The quickest run: IM-PT alone (no source training)."""
    return tiny_config(root, out, evaluation={"methods": ["IM-PT"]}, run=run)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# finding 1: a folder that torchcross did not create


def test_a_folder_torchcross_did_not_create_is_refused_and_left_as_it_was(
    data_root: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my thesis results")
    (mine / "episodes.csv").write_text("my,own\n1,2\n")
    (mine / "sub").mkdir()
    (mine / "sub" / f".a.txt.tmp-{DEAD}.txt").write_text("a note of mine")
    before = _tree(mine)
    with pytest.raises(
        FileExistsError,
        match=r"out_dir '.*mine' is a folder that torchcross did not create: it holds episodes\.csv, "
        r"results\.md, sub/ .*allow_existing_out_dir = true \(torchcross run --allow-existing-out\)",
    ):
        run_protocol(_im_pt(data_root, mine), progress=False, log=None)
    assert _tree(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == [
        "episodes.csv",
        "results.md",
        "sub",
    ]  # no marker, no lock


def test_the_cli_refuses_out_and_names_the_flag(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "exp.toml"
    config.write_text(
        f'[data]\nroot = "{data_root}"\ntargets = ["tgt/abnormal"]\nsources = ["src/class"]\n'
        'target_split = "test"\nmin_class_size = 0\n'
        '[evaluation]\nmethods = ["IM-PT"]\nn_episodes = 3\nn_shot = 2\nn_query = 3\n'
        '[backbone]\nname = "conv4"\nhidden = 4\nweights = "random"\n'
        "[finetune]\nsteps = 2\nfreeze_backbone = true\n"
        '[run]\nout_dir = "out"\nplot = false\nnum_threads = 1\n'
    )
    # the folder of the config itself, as with --out .
    assert main(["run", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"'{tmp_path}' is a folder that torchcross did not create: it holds exp.toml" in err
    assert "--allow-existing-out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]
    assert main(["run", str(config), "--out", str(tmp_path), "--allow-existing-out"]) == 0
    assert (tmp_path / "results.md").is_file()
    assert config.read_text().startswith("[data]")


def test_demo_out_into_a_foreign_folder_is_refused_before_any_data_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert demo_main(["--out", str(tmp_path), "--quick", "--no-plot"]) == 2
    assert f"torchcross demo: error: [run] out_dir '{tmp_path}' is a folder that torchcross did not" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no data/ written
    assert demo_config(tmp_path, allow_existing_out_dir=True).run.allow_existing_out_dir


def test_an_allowed_existing_folder_keeps_every_file_and_look_alike_temporary_of_the_user(
    data_root: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    (mine / "sub" / "deeper").mkdir(parents=True)
    user_files = {
        mine / "notes.txt": "mine",
        mine / f".a.txt.tmp-{DEAD}.txt": "named like a temporary",
        mine / f".notes.md.tmp-{DEAD}.md": "named like a temporary of a file torchcross does not write",
        mine / "sub" / f".a.txt.tmp-{DEAD}.txt": "in a subfolder",
        mine / "sub" / "deeper" / f".results.json.tmp-{DEAD}.json": "named like ours, but not where we write",
        mine / "sub" / f".model.pt.tmp-{DEAD}.pt": "a temporary of a checkpoint name, outside checkpoints/",
    }
    for path, text in user_files.items():
        path.write_text(text)
    lines: list[str] = []
    run_protocol(_im_pt(data_root, mine, allow_existing_out_dir=True), progress=False, log=lines.append)
    assert {p: p.read_text() for p in user_files} == user_files
    assert not any("temporary file left" in line for line in lines)
    assert (mine / OUT_DIR_MARKER).is_file()
    assert (mine / "results.md").is_file()
    # marked now: a rerun without the flag resumes (reuses the finished evaluation)
    lines.clear()
    run_protocol(_im_pt(data_root, mine), progress=False, log=lines.append)
    assert any("reusing finished evaluation" in line for line in lines)
    assert {p: p.read_text() for p in user_files} == user_files


@pytest.mark.parametrize("theirs", ["results.md", "paired.csv", "checkpoints"])
def test_an_allowed_existing_folder_with_files_named_like_ours_is_refused(
    data_root: Path, tmp_path: Path, theirs: str
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    if theirs == "checkpoints":
        (mine / theirs).mkdir()
        (mine / theirs / "best.pt").write_text("my model")
    else:
        (mine / theirs).write_text("my own")
    before = _tree(mine)
    with pytest.raises(
        FileExistsError, match=rf"'.*mine' holds {theirs}/?, which torchcross did not write .*move them away"
    ):
        run_protocol(_im_pt(data_root, mine, allow_existing_out_dir=True), progress=False, log=None)
    assert _tree(mine) == before
    assert not (mine / OUT_DIR_MARKER).exists()


def test_a_new_or_empty_folder_is_used_and_a_run_folder_resumes(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "run", tmp_path / "empty"):
        run_protocol(_im_pt(data_root, out), progress=False, log=None)
        assert (out / OUT_DIR_MARKER).is_file()
        lines: list[str] = []
        run_protocol(_im_pt(data_root, out), progress=False, log=lines.append)
        assert any("reusing finished evaluation" in line for line in lines)


def test_a_marker_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / OUT_DIR_MARKER).symlink_to(target)
    with pytest.raises(FileExistsError, match=r"\.torchcross-run' is not a regular file.*remove it"):
        check_out_dir(tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"'.*file' exists and is not a folder; choose another"):
        check_out_dir(tmp_path / "file")


def test_the_stale_temporary_sweep_removes_only_temporaries_of_the_names_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    ours = tmp_path / f".results.json.tmp-{DEAD}.json"
    deeper = tmp_path / "sub" / f".results.json.tmp-{DEAD}.json"
    other_suffix = tmp_path / f".results.json.tmp-{DEAD}.txt"  # not a name temp_name() makes
    user = tmp_path / f".a.txt.tmp-{DEAD}.txt"
    for p in (ours, deeper, other_suffix, user):
        p.write_text("x")
    (tmp_path / f".results.csv.tmp-{DEAD}.csv").mkdir()  # a folder is never removed
    assert remove_stale_temp_files(tmp_path, ["results.json"]) == [ours]
    assert [p.exists() for p in (deeper, other_suffix, user)] == [True, True, True]
    with pytest.raises(TypeError, match=r"names must be a collection .* not the string '\*\.json'"):
        remove_stale_temp_files(tmp_path, "*.json")


# finding 2: a planted lock file


def test_a_symlinked_lock_file_is_refused_and_its_target_left_intact(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("years of work")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".torchcross.lock").symlink_to(precious)
    with (
        pytest.raises(OSError, match=r"lock file '.*\.torchcross\.lock' is a symbolic link.*move it away"),
        lock_folder(tmp_path / "out"),
    ):
        pass
    assert precious.read_text() == "years of work"


def test_a_dangling_symlinked_lock_file_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".torchcross.lock").symlink_to(tmp_path / "created-elsewhere")
    with pytest.raises(OSError, match=r"is a symbolic link"), lock_folder(tmp_path / "out"):
        pass
    assert not (tmp_path / "created-elsewhere").exists()


def test_a_run_with_a_planted_lock_link_leaves_the_target_intact(data_root: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("years of work")
    out = tmp_path / "out"
    check_out_dir(out)  # a run's folder
    (out / ".torchcross.lock").symlink_to(precious)
    with pytest.raises(OSError, match=r"\.torchcross\.lock' is a symbolic link"):
        run_protocol(_im_pt(data_root, out), progress=False, log=None)
    assert precious.read_text() == "years of work"


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _hard_link(path: Path) -> None:
    (path.parent / "other-name").write_text("")
    os.link(path.parent / "other-name", path)


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (lambda p: p.write_text("my notes, not a process id"), "holds other data than a process id"),
        (lambda p: p.write_bytes(b"1" * 100), "holds other data than a process id"),
        (_fifo, "is not a regular file"),
        (lambda p: p.mkdir(), "is not a regular file"),
        (_hard_link, r"has other names \(hard links\)"),
    ],
)
def test_a_lock_file_that_is_not_ours_is_never_truncated(tmp_path: Path, plant, problem: str) -> None:
    lock = tmp_path / ".torchcross.lock"
    plant(lock)
    before = lock.read_bytes() if lock.is_file() else None
    with (
        no_hang(10),
        pytest.raises(OSError, match=rf"lock file '.*\.torchcross\.lock' {problem}.*move it away"),
        lock_folder(tmp_path),
    ):
        pass
    if before is not None:
        assert lock.read_bytes() == before


def test_a_lock_file_of_an_earlier_run_is_reused(tmp_path: Path) -> None:
    (tmp_path / ".torchcross.lock").write_text("999999999\n")  # a killed run's
    with lock_folder(tmp_path):
        assert (tmp_path / ".torchcross.lock").read_text() == f"{os.getpid()}\n"
    assert (tmp_path / ".torchcross.lock").read_text() == ""


# finding 3: a checkpoint folder that cannot be written


def test_a_file_in_place_of_the_checkpoint_folder_is_named_with_what_to_do(
    data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    check_out_dir(out)
    (out / "checkpoints").write_text("not a folder")
    config = tiny_config(data_root, out, evaluation={"methods": ["mm-PT"]})
    with pytest.raises(
        NotADirectoryError,
        match=r"checkpoint not saved: cannot write '.*checkpoints/tgt/mm-PT\.pt': Not a directory; .*"
        r"'.*out/checkpoints' is a file where a folder should be: move it away, or write elsewhere "
        r"\(in a protocol run: another \[run\] out_dir\)",
    ):
        run_protocol(config, progress=False, log=None)
    assert (out / "checkpoints").read_text() == "not a folder"


@pytest.mark.parametrize("where", ["folder", "file"])
def test_a_read_only_checkpoint_folder_is_named_with_what_to_do(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "out"
    check_out_dir(out)
    (out / "checkpoints").mkdir()
    read_only = out / "checkpoints" if where == "folder" else out / "checkpoints" / "tgt"
    real_mkdir, real_open = Path.mkdir, open

    def mkdir(self: Path, *args, **kwargs) -> None:  # as in a read-only checkpoints/
        if self.parent == read_only and not self.exists():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    def open_(file, *args, **kwargs):  # as in a read-only checkpoints/tgt/
        if Path(file).parent == read_only and ".tmp-" in Path(file).name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(_io, "open", open_, raising=False)
    config = tiny_config(data_root, out, evaluation={"methods": ["mm-PT"]})
    with pytest.raises(
        PermissionError,
        match=rf"checkpoint not saved: cannot write '.*mm-PT\.pt': Permission denied; .*"
        rf"make the folder '{read_only}' writable, or write elsewhere \(in a protocol run: another "
        r"\[run\] out_dir\)",
    ):
        run_protocol(config, progress=False, log=None)
