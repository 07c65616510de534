"""The ``torchcross`` command: help texts, sub-commands, and clear errors for bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torchcross.cli import main
from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.datasets.medimeta import MedIMeta


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("cli") / "data")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "examples:"),
        (["run"], "Names, paths and the output folder are checked before any training"),
        (["demo"], "scikit-learn's bundled handwritten digits"),
        (["medimeta"], "list the catalogue"),
        (["medimeta", "convert"], "MedMNIST .npz"),
        (["episodes", "sample"], "checksum"),
    ],
)
def test_help_explains_each_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())


def test_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("torchcross ")
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_import_is_light() -> None:
    code = (
        "import sys, torchcross.cli; print(sorted(m for m in ('torch', 'numpy', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_medimeta_list_and_info(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, _ = _run(capsys, "medimeta", "list")
    assert code == 0
    assert "19 datasets, 54 tasks" in out
    assert "| glaucoma | Glaucoma-specific fundus images | Retinal fundus | Glaucoma suspect (BIN 2) |" in out
    code, out, _ = _run(capsys, "medimeta", "list", "--kind", "ORDINAL_REGRESSION")
    assert "5 tasks" in out
    code, out, _ = _run(capsys, "medimeta", "list", "--data-path", str(data))
    assert "4 datasets, 16 tasks" in out
    code, out, _ = _run(capsys, "medimeta", "info", "oct")
    assert code == 0
    assert "disease class [MULTICLASS_CLASSIFICATION, 4]" in out
    code, out, _ = _run(capsys, "medimeta", "info", "digits_scan_a", "--data-path", str(data))
    assert "domain overlaps: ['digits_scan_b']" in out
    assert "leave-one-out sources: 8 tasks from ['digits_defocus', 'digits_negative']" in out


def test_unknown_dataset_lists_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "medimeta", "info", "retina")
    assert code == 2
    assert "unknown dataset 'retina'; known datasets: aml, bus" in err


def test_verify(capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "medimeta", "verify", str(data))
    assert code == 0
    assert "4 of 4 datasets valid" in out
    code, out, _ = _run(capsys, "medimeta", "verify", str(data / "digits_negative"))
    assert code == 0
    assert "1 of 1 datasets valid" in out
    broken = tmp_path / "broken"
    (broken / "bad").mkdir(parents=True)
    (broken / "bad" / "info.yaml").write_text("id: bad\n")
    code, out, _ = _run(capsys, "medimeta", "verify", str(broken))
    assert code == 1
    assert "invalid: ['bad']" in out
    code, _, err = _run(capsys, "medimeta", "verify", str(tmp_path / "nowhere"))
    assert code == 2
    assert "is not a directory" in err


def test_convert_medmnist_and_image_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None].astype(np.uint8)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    code, out, _ = _run(
        capsys,
        "medimeta",
        "convert",
        "medmnist",
        str(tmp_path / "breastmnist.npz"),
        "--out",
        str(tmp_path / "mm"),
    )
    assert code == 0, out
    assert "22 images" in out
    code, out, _ = _run(capsys, "medimeta", "verify", str(tmp_path / "mm" / "breastmnist"))
    assert code == 0
    assert MedIMeta(tmp_path / "mm", "breastmnist", "breastmnist", split="test").labels.shape == (6, 1)

    for cls in ("cat", "dog"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (10, 8), (i * 40, 0, 0)).save(tmp_path / "pets" / cls / f"{i}.png")
    code, out, _ = _run(
        capsys,
        "medimeta",
        "convert",
        "folder",
        str(tmp_path / "pets"),
        "--out",
        str(tmp_path / "mm"),
        "--image-size",
        "16",
    )
    assert code == 0, out
    assert "10 images, task 'class', MULTICLASS_CLASSIFICATION" in out
    code, _, err = _run(
        capsys, "medimeta", "convert", "medmnist", str(tmp_path / "none.npz"), "--out", str(tmp_path)
    )
    assert code == 2
    assert "does not exist" in err
    code, _, err = _run(
        capsys, "medimeta", "convert", "folder", str(tmp_path / "pets"), "--out", str(tmp_path / "mm")
    )
    assert code == 2
    assert "exists; pass overwrite=True" in err


def test_episodes_sample(capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "eps.json"
    code, out, _ = _run(
        capsys, "episodes", "sample", "--data-path", str(data), "--task", "digits_scan_b/ink level",
        "--out", str(out_file), "--n-episodes", "3", "--seed", "4",
    )  # fmt: skip
    assert code == 0
    assert "wrote 3 episodes of digits_scan_b/ink level" in out
    doc = json.loads(out_file.read_text())
    assert doc["n_episodes"] == 3
    assert doc["sampling"]["seed"] == 4
    code, _, err = _run(
        capsys,
        "episodes",
        "sample",
        "--data-path",
        str(data),
        "--task",
        "digits_scan_b/size",
        "--out",
        str(out_file),
    )
    assert code == 2
    assert "has no task 'size'; its tasks are ['digit', 'even digit', 'digit properties', 'ink level']" in err
    code, _, err = _run(
        capsys,
        "episodes",
        "sample",
        "--data-path",
        str(data),
        "--task",
        "digits_scan_b",
        "--out",
        str(out_file),
    )
    assert "must be 'dataset/task name'" in err
    code, _, err = _run(
        capsys,
        "episodes",
        "sample",
        "--data-path",
        str(tmp_path / "no"),
        "--task",
        "a/b",
        "--out",
        str(out_file),
    )
    assert code == 2
    assert "is not a directory" in err


def _write_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        f'[data]\nroot = "{data}"\ntargets = ["digits_negative/even digit"]\nmin_class_size = 0\n'
        '[evaluation]\nmethods = ["IM-PT"]\nn_episodes = 3\n'
        '[backbone]\nname = "conv4"\nhidden = 8\nweights = "random"\n'
        "[finetune]\nsteps = 2\nfreeze_backbone = true\n"
        f'[run]\nout_dir = "out"\nplot = false\nnum_threads = 1\n{extra}'
    )
    return path


def test_run_check_and_run(capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path, data)
    code, out, _ = _run(capsys, "run", str(config), "--check")
    assert code == 0
    assert "target digits_negative: tasks ['even digit']" in out
    assert "config ok" in out
    assert not (tmp_path / "out" / "results.csv").exists()
    code, out, _ = _run(capsys, "run", str(config), "--out", str(tmp_path / "elsewhere"))
    assert code == 0
    assert "| scratch | digits_negative/even digit | BINARY_CLASSIFICATION | 3 |" in out
    assert (tmp_path / "elsewhere" / "results.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("lr = 0.1\n", r"unknown key 'lr' in section \[run\]; allowed keys: out_dir, seed"),
        ("[pretrain]\nstep = 3\n", r"unknown key 'step' in section \[pretrain\]"),
    ],
)
def test_run_rejects_unknown_keys(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path, extra: str, message: str
) -> None:
    code, _, err = _run(capsys, "run", str(_write_config(tmp_path, data, extra)))
    assert code == 2
    assert err.startswith("torchcross run: error: ")
    assert re.search(message, err)


def test_run_reports_missing_data_and_unwritable_output(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "run", str(_write_config(tmp_path, tmp_path / "missing")))
    assert code == 2
    assert "is not a directory" in err
    (tmp_path / "blocker").write_text("x")
    code, _, err = _run(
        capsys, "run", str(_write_config(tmp_path, data)), "--out", str(tmp_path / "blocker" / "out")
    )
    assert code == 2
    assert "is not writable" in err
    code, _, err = _run(capsys, "run", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "does not exist" in err


def test_demo_rejects_unknown_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--methods", "MAML")
    assert code == 2
    assert "unknown method 'MAML'; known methods: IM-PT, scratch, linear-probe, mm-PT, mm-MAML" in err
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path), "--methods", "IM-PT", "--targets", "mnist")
    assert code == 2
    assert "unknown target dataset 'mnist'; datasets under the data root: ['digits_defocus'" in err


def test_module_entry_point_runs() -> None:
    cmd = [sys.executable, "-m", "torchcross.cli", "medimeta", "info", "bus"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "malignancy [BINARY_CLASSIFICATION, 2]" in result.stdout
