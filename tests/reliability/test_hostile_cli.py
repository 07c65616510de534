"""Hostile input to ``torchcross run`` / ``torchcross demo`` and the config: paths that are not what
they claim, devices the protocol cannot train on, and plugins (which run code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reliability_helpers import small_root

from torchcross.cli.app import main
from torchcross.protocol.config import config_from_dict, import_plugin, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_root(tmp_path_factory.mktemp("hostile-cli") / "data")


def _toml(root: Path, out: Path, run: str = "", evaluation: str = 'methods = ["IM-PT"]') -> str:
    return (
        f'[data]\nroot = "{root}"\ntargets = ["tgt/abnormal"]\nsources = ["src/class"]\n'
        'target_split = "test"\nmin_class_size = 0\n'
        f"[evaluation]\n{evaluation}\nn_episodes = 2\nn_shot = 2\nn_query = 3\n"
        '[backbone]\nname = "conv4"\nhidden = 4\nweights = "random"\n[augmentation]\nenabled = false\n'
        f'[run]\nout_dir = "{out}"\nplot = false\nnum_threads = 1\n{run}'
    )


# -- config and data paths that are not what they claim ------------------------------------------------
def test_a_config_path_that_is_a_directory_is_named_as_one(tmp_path: Path) -> None:
    folder = tmp_path / "exp.toml"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"config file '.*exp\.toml' is a directory; give the"):
        load_config(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_config_path_that_is_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "exp.toml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(ValueError, match=r"config file '.*exp\.toml' is not a regular file"):
        load_config(fifo)


def test_a_config_file_of_a_list_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text("- data\n- run\n", encoding="utf-8")
    with pytest.raises(TypeError, match=r"config file '.*exp\.yaml' must hold sections .*not a list"):
        load_config(tmp_path / "exp.yaml")


def test_demo_data_path_that_is_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "digits"
    blocker.write_text("mine", encoding="utf-8")
    assert main(["demo", "--quick", "--data", str(blocker), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Errno" not in err
    assert f"demo data folder {str(blocker)!r} exists and is not a folder" in err
    assert "--data DIR" in err
    assert blocker.read_text(encoding="utf-8") == "mine"


def test_an_out_dir_that_is_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("mine", encoding="utf-8")
    assert main(["demo", "--quick", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert f"output folder {str(blocker)!r} exists and is not a folder" in err
    assert "not writable" not in err
    assert blocker.read_text(encoding="utf-8") == "mine"


# -- [run] device --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "why"),
    [
        ("meta", "is a 'meta' device, which the protocol cannot train on"),
        ("xla", "is a 'xla' device, which the protocol cannot train on"),
        ("garbage", "is not a torch device"),
        ("CUDA", "is not a torch device"),
        ("", "is not a torch device"),
    ],
)
def test_a_device_the_protocol_cannot_train_on_is_refused_when_read(device: str, why: str) -> None:
    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o", "device": device}}
    with pytest.raises(ValueError, match=rf"\[run\] device = '{device}' {why}; use 'cpu', 'cuda', 'cuda:N'"):
        config_from_dict(raw)


def test_device_meta_fails_check(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "exp.toml").write_text(_toml(root, tmp_path / "out", 'device = "meta"\n'), encoding="utf-8")
    assert main(["run", str(tmp_path / "exp.toml"), "--check"]) == 2
    captured = capsys.readouterr()
    assert "config ok" not in captured.out
    assert "[run] device = 'meta' is a 'meta' device" in captured.err


def test_devices_this_machine_lacks_fail_check(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    (tmp_path / "exp.toml").write_text(_toml(root, tmp_path / "out", 'device = "mps"\n'), encoding="utf-8")
    assert main(["run", str(tmp_path / "exp.toml"), "--check"]) == 2
    assert (
        "[run] device 'mps' asked for MPS (Apple GPUs), which is not available here"
        in capsys.readouterr().err
    )
    # a CUDA index beyond the GPUs present (one GPU pretended: nothing is put on it)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    (tmp_path / "exp.toml").write_text(_toml(root, tmp_path / "out", 'device = "cuda:3"\n'), encoding="utf-8")
    assert main(["run", str(tmp_path / "exp.toml"), "--check"]) == 2
    assert (
        "[run] device 'cuda:3': this machine has 1 CUDA device(s), cuda:0 to cuda:0"
        in capsys.readouterr().err
    )


# -- [run] plugins -------------------------------------------------------------------------------------
_PLUGIN = (
    "import sys\n"
    "from torchcross.protocol import register_method\n"
    "print('PLUGIN CODE RAN', file=sys.stderr)\n"
    "register_method('hostile-noop', None, lambda ctx, trained: None, replace=True)\n"
)


def test_plugins_are_announced_before_they_run_and_check_says_so(
    root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from torchcross.protocol import unregister_method

    (tmp_path / "methods.py").write_text(_PLUGIN, encoding="utf-8")
    config = _toml(root, tmp_path / "out", 'plugins = ["methods.py"]\n', 'methods = ["hostile-noop"]')
    (tmp_path / "exp.toml").write_text(config, encoding="utf-8")
    try:
        assert main(["run", str(tmp_path / "exp.toml"), "--check"]) == 0
    finally:
        unregister_method("hostile-noop")
    out, err = capfd.readouterr()
    announce = f"torchcross: loading plugin file {str(tmp_path / 'methods.py')!r}; its code runs now"
    assert announce in err
    assert err.index(announce) < err.index("PLUGIN CODE RAN")
    assert "plugins (imported when the config was read: their code ran): methods.py" in out
    assert "config ok" in out


@pytest.mark.parametrize("entry", ["", "cwd"])
def test_a_bare_module_name_is_not_imported_from_the_current_directory(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -c`` puts ``''`` first on ``sys.path``, ``python -m`` the current folder itself."""
    name = f"hostile_local_{entry or 'empty'}"
    marker = tmp_path / "ran"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["" if entry == "" else str(tmp_path), *sys.path])
    before = list(sys.path)
    with pytest.raises(ImportError, match=rf"is in the current directory .*plugins = \[\"{name}.py\"\]"):
        import_plugin(name)
    assert not marker.exists()
    assert name not in sys.modules
    assert sys.path == before  # the current-directory entry is put back


def test_module_plugins_still_load_from_an_explicit_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "site" / "hostile_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "methods.py").write_text("VALUE = 7\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "site"), *sys.path])
    try:
        assert import_plugin("hostile_pkg.methods").VALUE == 7
    finally:
        for mod in ("hostile_pkg.methods", "hostile_pkg"):
            sys.modules.pop(mod, None)
    assert (
        f"loading plugin module 'hostile_pkg.methods' (package 'hostile_pkg': {package}"
        in capfd.readouterr().err
    )


def test_python_dash_m_does_not_import_a_plugin_from_the_current_directory(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "stray_methods.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "exp.toml").write_text(
        '[data]\nroot = "d"\ntargets = ["t"]\n[run]\nout_dir = "o"\nplugins = ["stray_methods"]\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torchcross.cli", "run", "exp/exp.toml", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert not marker.exists()
    assert "cannot import module 'stray_methods'" in proc.stderr
    assert 'plugins = ["stray_methods.py"]' in proc.stderr


def test_plugin_errors_name_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    with pytest.raises(ImportError, match=r"plugins: '.*boom\.py' failed while loading: RuntimeError: boom"):
        import_plugin("boom.py", tmp_path)
    assert "torchcross_plugin_boom" not in sys.modules
    (tmp_path / "folder.py").mkdir()
    with pytest.raises(IsADirectoryError, match=r"plugins: '.*folder\.py' is a directory"):
        import_plugin("folder.py", tmp_path)
    with pytest.raises(ValueError, match=r"plugins entry '\.\./evil' is neither a module name"):
        import_plugin("../evil", tmp_path)
