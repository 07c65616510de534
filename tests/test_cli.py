"""The ``torchcross`` command: help texts, sub-commands, and clear errors for bad input."""

from __future__ import annotations

import json
import os
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
    with pytest.raises(SystemExit, match=r"^0$") as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())


def test_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"^0$") as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("torchcross ")
    with pytest.raises(SystemExit, match=r"^2$") as exc:
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


# -- Ctrl-C, resume messages, resolved paths, convert descriptions, demo help --------------------------------
REPO = Path(__file__).resolve().parents[1]


def _cli_process(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "torchcross.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """In the child before exec: SIGINT handled and unblocked, whatever the suite's parent set.

    A shell running the suite in the background ignores SIGINT, and a harness may block it;
    both dispositions survive exec, and the command under test must see a plain Ctrl-C.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_state(pid: int) -> str:
    """The signal masks of a live process (Linux), for a failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "(no /proc status)"
    return " ".join(line for line in lines if line.startswith(("State", "Sig", "Shd")))


def test_ctrl_c_stops_a_run_with_one_line_and_the_rerun_resumes(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    import signal
    import time

    extra = "checkpoint_every = 2\n[pretrain]\nsteps = 1000000\nbatch_size = 4\n"
    config = _write_config(tmp_path, data, extra)
    text = config.read_text().replace('methods = ["IM-PT"]', 'methods = ["mm-PT"]')
    config.write_text(text)
    ckpt = tmp_path / "out" / "checkpoints" / "digits_negative" / "mm-PT.pt"
    proc = _cli_process("run", str(config), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.is_file(), "training did not start"
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            state = _signal_state(proc.pid)
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"the run went on for 120 s after SIGINT; {state}; stderr tail:\n{err[-4000:]}")
    finally:
        proc.kill()
        proc.communicate()  # reaped and its pipes closed here, not in a later test's garbage collection
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(
        r"torchcross run: stopped; rerun the same command to resume mm-PT on digits_negative from step (\d+)",
        lines[0],
    )
    assert match, lines[0]
    step = int(match.group(1))
    assert step >= 2
    assert step % 2 == 0
    assert f"data root: {data.resolve()}" in out
    # the rerun (with just two more steps, which the checkpoint allows) says where it resumes
    config.write_text(text.replace("steps = 1000000", f"steps = {step + 2}"))
    code, out, _ = _run(capsys, "run", str(config))
    assert code == 0
    assert f"resuming mm-PT on digits_negative from step {step} of {step + 2}" in out
    curve = (tmp_path / "out" / "curves" / "digits_negative" / "mm-PT.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in curve[1:]] == list(range(1, step + 3))  # each step once
    assert f"results_csv: {(tmp_path / 'out' / 'results.csv').resolve()}" in out


def test_paths_are_printed_resolved(capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path) -> None:
    (data.parent / "run4").mkdir(exist_ok=True)
    config = _write_config(tmp_path, data.parent / "run4" / ".." / data.name)
    code, out, _ = _run(capsys, "run", str(config), "--check")
    assert code == 0
    assert f"data root: {data.resolve()}" in out
    assert "/../" not in out


def test_stopped_message() -> None:
    from torchcross.cli.stop import stopped_message
    from torchcross.protocol.training import TrainingInterrupted

    exc = TrainingInterrupted("mm-MAML on oct", 40)
    assert stopped_message("torchcross run", exc) == (
        "torchcross run: stopped; rerun the same command to resume mm-MAML on oct from step 40"
    )
    assert stopped_message("torchcross run", exc, "without --no-resume").startswith(
        "torchcross run: stopped; rerun without --no-resume to resume mm-MAML"
    )
    assert stopped_message("torchcross medimeta", KeyboardInterrupt(), None) == "torchcross medimeta: stopped"


def test_demo_help_shows_a_plain_percent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"^0$"):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "95% confidence" in out
    assert "%%" not in out
    assert "(default: auto)" in " ".join(out.split())


def _unknown_npz(tmp_path: Path, levels: int = 3) -> Path:
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 9), ("val", 3), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % levels)[:, None].astype(np.uint8)
    path = tmp_path / "myscans.npz"
    np.savez(path, **arrays)
    return path


def test_convert_an_unknown_npz_with_kind_and_classes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npz, out = _unknown_npz(tmp_path), tmp_path / "mm"
    code, _, err = _run(capsys, "medimeta", "convert", "medmnist", str(npz), "--out", str(out))
    assert code == 2
    assert "'myscans.npz' is not one of the twelve 2D MedMNIST files (its name gives 'myscans'" in err
    assert "describe its task with --kind KIND --classes NAME [NAME ...] or --description FILE.json" in err
    assert "task_description=" not in err
    code, stdout, err = _run(
        capsys, "medimeta", "convert", "medmnist", str(npz), "--out", str(out),
        "--kind", "ordinal", "--classes", "none", "mild", "severe", "--task", "grade", "--domain", "Scans",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {(out / 'myscans').resolve()} (18 images, task 'grade', ORDINAL_REGRESSION)" in stdout
    source = MedIMeta(out, "myscans", "grade", split="test")
    assert source.task_description.classes.to_dict() == {0: "none", 1: "mild", 2: "severe"}
    assert source.task_description.domain_identifier == "Scans"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_convert_an_unknown_npz_with_a_description_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str
) -> None:
    npz = _unknown_npz(tmp_path, levels=2)
    desc = {
        "kind": "BINARY_CLASSIFICATION",
        "classes": {"0": "benign", "1": "malignant"},
        "task": "malignancy",
    }
    path = tmp_path / f"task{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(desc))
    else:
        path.write_text("kind: binary\nclasses: {0: benign, 1: malignant}\ntask: malignancy\ndomain: US\n")
    code, stdout, err = _run(
        capsys,
        "medimeta",
        "convert",
        "medmnist",
        str(npz),
        "--out",
        str(tmp_path / "mm"),
        "--description",
        str(path),
    )
    assert code == 0, err
    assert "task 'malignancy', BINARY_CLASSIFICATION" in stdout
    task = MedIMeta(tmp_path / "mm", "myscans", "malignancy", split="train").task_description
    assert task.classes.to_dict() == {0: "benign", 1: "malignant"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kind", "ordinal"], "--kind and --classes go together"),
        (["--classes", "a", "b"], "--kind and --classes go together"),
        (
            ["--kind", "regressive", "--classes", "a", "b"],
            "unknown task kind 'regressive'; use binary, multiclass",
        ),
        (
            ["--kind", "binary", "--classes", "a", "b", "c"],
            r"--kind/--classes: a binary task must have class keys",
        ),
        (
            ["--kind", "binary", "--classes", "a", "b", "--description", "d.json"],
            "give either --description or",
        ),
        (["--description", "missing.json"], "description file 'missing.json' does not exist"),
        (["--description", "bad.json"], r"bad.json must hold an object with 'kind' and 'classes'"),
        (
            ["--description", "extra.json"],
            r"unknown keys \['labels'\]; allowed keys: kind, classes, task, domain",
        ),
        (["--description", "task.txt"], "must end in .json, .yaml or .yml"),
        (["--description", "pipe.json"], r"description file '.*pipe.json' is a FIFO, not a regular file"),
        (["--description", "latin.json"], r"description file 'latin.json' is not UTF-8 text"),
    ],
)
def test_convert_description_errors(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('["kind"]')
    (tmp_path / "extra.json").write_text('{"kind": "binary", "classes": ["a", "b"], "labels": 2}')
    (tmp_path / "task.txt").write_text("kind: binary")
    os.mkfifo(tmp_path / "pipe.json")  # never opened for reading: that would wait for a writer
    (tmp_path / "latin.json").write_bytes('{"kind": "binary", "classes": ["\xe9", "b"]}'.encode("latin-1"))
    npz = _unknown_npz(tmp_path, levels=2)
    code, _, err = _run(capsys, "medimeta", "convert", "medmnist", str(npz), "--out", "mm", *options)
    assert code == 2
    assert re.search(message, err), err
    folder = ["medimeta", "convert", "folder", str(tmp_path), "--out", "mm"]
    code, _, err = _run(capsys, *folder, "--kind", "binary", "--classes", "a", "b")
    assert code == 2
    assert "apply to medmnist files" in err
