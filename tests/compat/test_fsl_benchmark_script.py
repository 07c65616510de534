"""The MedIMeta authors' foundation-model benchmark script, on this package.

``finetune_and_test.py`` of StefanoWoerner/medimeta-fsl-benchmark (commit 757d7d8) fine-tunes or
linear-probes a Hugging Face backbone on presampled MedIMeta episodes with the later torchcross API
``SimpleClassifier(..., head_init=..., linear_probe=...)`` and a Lightning ``Trainer`` per episode. Its
repository has no licence file, so its files are not copied here: ``fsl_benchmark_client/`` holds a client
written in their style (the same calls, command line and output files), and ``TORCHCROSS_FSL_BENCHMARK``
naming a checkout of their repository runs every test below on their own files as well (checked to be the
files of that commit). The script runs on tiny randomly initialised ResNet, ViT and DINOv2 models saved with
``save_pretrained`` (offline), on a small MedIMeta-format folder, and its per-episode results are compared
with this library's own [`FineTuner`][torchcross.learners.finetuner.FineTuner] on the same episodes."""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
import pickle
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import medimeta
import pytest
import torch
from tiny_foundation_models import hub_offline
from torch import nn

import torchcross as tx
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.task import TaskDescription
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
from torchcross.evaluation.metrics import compute_metrics
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.policies import HeadPolicy, InnerLoop
from torchcross.models import SimpleClassifier as PlainSimpleClassifier
from torchcross.models.lightning import SimpleClassifier

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    # torchmetrics' AUROC of the one-class support batches the script logs while training
    pytest.mark.filterwarnings("ignore:No (positive|negative) samples in targets:UserWarning"),
]

# the client written here in the style of the authors' benchmark script (fsl_benchmark_client/README.md),
# and, with TORCHCROSS_FSL_BENCHMARK naming a checkout of their repository, their own files
CLIENT = Path(__file__).parent / "fsl_benchmark_client"
FILES = ("finetune_and_test.py", "models/tranformers_backbones.py")
# git blob hashes of the authors' files at their commit 757d7d8: a checkout must hold exactly these
BLOBS = {
    "finetune_and_test.py": "dfc22c7ad5a198786b4ce5ff8061f016d26f0e42",
    "models/tranformers_backbones.py": "0cf42d702874a90cd76e13c5aed76df3d319e69c",
}
AUTHORS = os.environ.get("TORCHCROSS_FSL_BENCHMARK")
SOURCES = ["client"] + (["authors"] if AUTHORS else [])
N_EPISODES = 2  # the script opens the file of 100 episodes; it holds these few (see _presample)
STEPS, LR = 5, 1e-2
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the script's


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _script_files(source: str) -> dict[str, bytes]:
    """The script and its ``models`` module: the client written here, or the authors' files, unchanged."""
    if source == "client":
        return {name: (CLIENT / f"{name}.txt").read_bytes() for name in FILES}
    files = {name: (Path(str(AUTHORS)) / name).read_bytes() for name in FILES}
    for name, data in files.items():
        assert _git_blob(data) == BLOBS[name], f"{name} of {AUTHORS} is not the file of commit 757d7d8"
    return files


@pytest.fixture(scope="module", params=SOURCES)
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    """The script and its ``models`` package, tiny backbones as hub-like folders, data and episodes."""
    root = tmp_path_factory.mktemp(f"fsl_benchmark_{request.param}")
    for name, data in _script_files(request.param).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    _save_tiny_models(root / "tiny")
    data = root / "MedIMeta"
    write_synthetic_medimeta(data, "toy", num_images=40, image_size=16, channels=3, seed=0)
    _presample(str(data), root / "MedIMeta_presampled", "toy", "abnormal", n_support=1)
    return root


def _save_tiny_models(folder: Path) -> None:
    from transformers import (
        Dinov2Config,
        Dinov2ForImageClassification,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    torch.manual_seed(0)
    vit = {"image_size": 16, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1}
    vit |= {"num_attention_heads": 2}
    models = {
        "resnet": ResNetForImageClassification(
            ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
        ),
        "vit": ViTForImageClassification(ViTConfig(intermediate_size=32, **vit)),
        "dinov2": Dinov2ForImageClassification(Dinov2Config(mlp_ratio=2, **vit)),
    }
    for name, model in models.items():
        model.save_pretrained(folder / name)


def _presample(data_path: str, out: Path, dataset_id: str, task: str, n_support: int) -> None:
    """The file medimeta's task presampling writes for the script's episodes (``n_query=10``,
    ``length=100``, no split), holding only ``N_EPISODES`` episodes: ``PickledMedIMetaTaskDataset``
    iterates over the episodes in the file, and a few keep the test fast."""
    source = medimeta.MedIMeta(data_path, dataset_id, task)
    episodes = FewShotMetaDataset(
        source, None, n_support, 10, 0, length=N_EPISODES, seed=0, output_indices=True
    )
    (out / dataset_id).mkdir(parents=True, exist_ok=True)
    with open(out / dataset_id / f"{task}_{n_support}_10_100.pkl", "wb") as f:
        pickle.dump(list(episodes), f)


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No hub (`tiny_foundation_models.hub_offline`)."""
    with hub_offline():
        yield


def _forget_models_package() -> None:
    """The script's ``models`` package is a top-level name: drop it from ``sys.modules``."""
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        del sys.modules[name]


def _run_script(workdir: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """``python finetune_and_test.py ARGS`` in ``workdir``, in this process."""
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    _forget_models_package()
    if not torch.cuda.is_available():
        # The script moves the linear probe's backbone to ``trainer.device_ids[0]``, which Lightning gives as
        # 0 on the CPU too, and ``.to(0)`` means cuda:0: without a GPU, name the trainer's own device.
        monkeypatch.setattr(pl.Trainer, "device_ids", property(lambda self: [self.strategy.root_device]))
    argv = [
        "finetune_and_test.py",
        "--data_path",
        "MedIMeta",
        "--presampled_data_path",
        "MedIMeta_presampled",
    ]
    argv += ["--target_dataset", "toy", "--target_task", "abnormal", "--n_support", "1"]
    argv += ["--optimizer", "Adam", "--learning_rate", str(LR), "--finetuning_steps", str(STEPS)]
    argv += ["--test_dir", str(out), *args]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        runpy.run_path("finetune_and_test.py", run_name="__main__")
    finally:
        _forget_models_package()


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    return header, rows


def _our_metrics(workdir: Path, backbone_folder: str, linear_probe: bool) -> list[dict[str, float]]:
    """This library's backbone loader and fine-tuner on the script's episodes and settings.

    The BatchNorm policy is the one the script's loop ends up with: ``from_pretrained`` leaves the model in
    eval mode, and since Lightning 2.2 (the script asks for ``lightning>=2.2.3``) ``Trainer.fit`` no longer
    calls ``.train()`` on the whole module (Lightning-AI/pytorch-lightning#18951): the fresh head trains in
    train mode, the backbone's layers stay in eval mode. Fine-tuning therefore runs BatchNorm with the
    stored running statistics, never updated, and dropout off, on the support set and on the query set
    alike, and the linear probe computes its features the same way: ``batch_norm="frozen"`` in both.
    """
    from torchvision import transforms

    from torchcross.backbones import Preprocessing, load_backbone

    # our loader of the same folder (the script's models.tranformers_backbones loads it the same way:
    # AutoModelForImageClassification with num_labels=0, in eval mode); the tiny folders have no
    # preprocessor_config.json, so the script's ImageNet normalisation is passed
    imagenet = Preprocessing(input_size=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    backbone = load_backbone(f"hf:{workdir / backbone_folder}", preprocessing=imagenet)
    width = backbone.num_features
    episodes = medimeta.PickledMedIMetaTaskDataset(
        str(workdir / "MedIMeta_presampled"),
        str(workdir / "MedIMeta"),
        "toy",
        "abnormal",
        n_support=1,
        n_query=10,
        length=100,
        collate_fn=tx.utils.collate_fn.stack,
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        ),
    )
    tuner = FineTuner(
        backbone,
        width,
        inner=InnerLoop(lr=LR, steps=STEPS, optimizer="adam"),
        finetune_backbone=not linear_probe,
        head=HeadPolicy(init="zero"),
        batch_norm="frozen",
    )
    results = []
    for task in episodes:
        logits = tuner.predict(task)
        results.append(compute_metrics(logits, task.query[1], task.description))
    return results


@pytest.mark.parametrize("linear_probe", [False, True], ids=["finetune", "linear_probe"])
@pytest.mark.parametrize("backbone", ["resnet", "vit", "dinov2"])
def test_finetune_and_test_runs_unchanged_and_agrees_with_ours(
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    offline: None,
    backbone: str,
    linear_probe: bool,
) -> None:
    folder = f"tiny/{backbone}"
    probe = ["--linear_probe"] if linear_probe else []
    _run_script(workdir, tmp_path, monkeypatch, "--backbone", folder, "--head_init", "zero", *probe)
    assert "All Test Metrics:" in capsys.readouterr().out
    # the script's experiment folder: <test_dir>/<dataset>_<task>/<n>-shot/<backbone with / as __>/<settings>
    runs = tmp_path / "toy_abnormal" / "1-shot" / f"tiny__{backbone}"
    settings = f"optim=Adam_lr={LR}_steps={STEPS}_hinit=zero_linear={linear_probe}_aug=False"
    per_episode = runs / settings / "version_0_test_metrics.csv"
    header, rows = _read_csv(per_episode)
    assert header[0] == ""  # pandas' index column, then the metrics Trainer.test returned
    assert set(header[1:]) == {"loss/test", "accuracy/test", "AUROC/test"}
    assert len(rows) == N_EPISODES
    theirs = [{k: float(v) for k, v in zip(header[1:], row[1:])} for row in rows]
    assert all(math.isfinite(v) for r in theirs for v in r.values())
    agg_header, agg_rows = _read_csv(runs / settings / "version_0_test_metrics_aggregated.csv")
    assert agg_header == ["", "mean", "std", "count"]
    assert {r[0]: float(r[3]) for r in agg_rows} == {k: N_EPISODES for k in theirs[0]}

    # ours on the same episodes: the same computation up to float32 rounding (measured: identical AUROC and
    # accuracy, losses within 5e-7), so the tolerances are rounding-sized
    ours = _our_metrics(workdir, folder, linear_probe)
    for n, (t, o) in enumerate(zip(theirs, ours)):
        assert t["loss/test"] == pytest.approx(o["loss"], rel=1e-4, abs=1e-5), n
        assert t["AUROC/test"] == pytest.approx(o["auroc"], abs=1e-6), n
        assert t["accuracy/test"] == pytest.approx(o["accuracy"], abs=1e-6), n


def test_the_script_runs_with_a_kaiming_head(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    _run_script(workdir, tmp_path, monkeypatch, "--backbone", "tiny/resnet", "--head_init", "kaiming")
    (csv,) = tmp_path.glob("toy_abnormal/1-shot/tiny__resnet/*hinit=kaiming*/version_0_test_metrics.csv")
    _header, rows = _read_csv(csv)
    assert len(rows) == N_EPISODES
    assert all(math.isfinite(float(v)) for row in rows for v in row[1:])


# The later API itself -----------------------------------------------------------------------------------

BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
MULTICLASS = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})


def _bn_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def test_head_init_zero_and_kaiming() -> None:
    zero = PlainSimpleClassifier(nn.Identity(), 8, MULTICLASS, False, head_init="zero")
    assert not zero.head.weight.any()
    assert not zero.head.bias.any()
    kaiming = PlainSimpleClassifier(nn.Identity(), 8, MULTICLASS, False, head_init="kaiming")
    bound = 1 / math.sqrt(8)  # nn.Linear's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias
    for p in (kaiming.head.weight, kaiming.head.bias):
        assert p.abs().max() <= bound
        assert p.abs().min() > 0
    default = SimpleClassifier(nn.Identity(), 8, BINARY, torch.optim.Adam, expand_input_channels=False)
    assert default.head_init == "kaiming"
    assert not default.linear_probe
    assert default.head.weight.any()


@pytest.mark.parametrize("bad", ["zeros", "default", "xavier", None])
def test_an_unknown_head_init_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"head_init must be one of \('kaiming', 'zero'\).*got"):
        SimpleClassifier(nn.Identity(), 8, BINARY, torch.optim.Adam, head_init=bad)


def _fit(model: SimpleClassifier, steps: int) -> pl.Trainer:
    torch.manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8), torch.tensor([0, 1] * 3)[:, None])
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, itertools.repeat(batch, steps))
    return trainer


def test_a_linear_probe_trains_the_head_only_with_the_backbone_frozen_in_eval_mode() -> None:
    backbone = _bn_backbone()
    backbone.train()  # a backbone in train mode, with trainable parameters: frozen and put in eval mode
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = SimpleClassifier(backbone, 4, BINARY, partial_adam(1e-1), head_init="zero", linear_probe=True)
    assert not any(p.requires_grad for p in backbone.parameters())
    modes: list[bool] = []
    backbone.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    _fit(model, 3)
    assert modes
    assert not any(modes)
    for k, v in backbone.state_dict().items():  # weights and BatchNorm running statistics
        assert torch.equal(v, before[k]), k
    assert model.head.weight.any()  # the head trained
    assert not model.train().backbone.training


def test_without_linear_probe_the_backbone_trains() -> None:
    """The check above is sensitive: the same fit, not a linear probe, changes weights and statistics."""
    backbone = _bn_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = SimpleClassifier(backbone, 4, BINARY, partial_adam(1e-1), head_init="zero")
    _fit(model, 3)
    assert not torch.equal(backbone[0].weight, before["0.weight"])
    assert not torch.equal(backbone[1].running_mean, before["1.running_mean"])


def partial_adam(lr: float) -> Any:
    return functools.partial(torch.optim.Adam, lr=lr)


class _WithUnusedParameter(nn.Module):
    """Like DINOv2's ``mask_token``: a parameter that the forward pass does not use."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fine_tuning_a_backbone_with_an_unused_parameter(optimizer: str) -> None:
    torch.manual_seed(0)
    backbone = _WithUnusedParameter()
    tuner = FineTuner(
        backbone, 3, inner=InnerLoop(lr=0.1, steps=3, optimizer=optimizer), finetune_backbone=True
    )
    support = (torch.randn(4, 4), torch.tensor([0, 1, 0, 1])[:, None])
    task = tx.data.task.Task(support, (torch.randn(2, 4), torch.tensor([0, 1])[:, None]), BINARY)
    params = tuner.adapt(task)
    assert torch.equal(params["backbone.unused"], backbone.unused)  # zero gradient: unchanged
    assert not torch.equal(params["backbone.linear.weight"], backbone.linear.weight)
