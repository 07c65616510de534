"""CLIP zero-shot: prompts from class names, logits per task kind, metrics, errors and the protocol method.

The model is a tiny randomly initialised OpenCLIP model built offline; the sign conventions (which class
is positive, a label against its negative) are checked with an orthogonal toy text tower, where the right
answer is known.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny_foundation_models import hub_offline, register_clip, save_open_clip_folder
from torch import nn
from zero_shot_helpers import save_tiny_hf_clip

from torchcross.backbones import Backbone, BackboneIdentity, Preprocessing, TextTower, load_backbone
from torchcross.evaluation.episodic import evaluate
from torchcross.evaluation.metrics import compute_metrics
from torchcross.learners.zero_shot import (
    ZeroShotClassifier,
    class_prompts,
    encode_prompts,
    find_text_tower,
    zero_shot_logits,
)
from torchcross.protocol.registry import get_method
from torchcross.protocol.schema import section_from_dict
from torchcross.protocol.zero_shot import ZeroShotConfig, zero_shot_learner
from torchcross.tasks.task import Task, TaskDescription

MULTICLASS = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "cat", 1: "dog", 2: "bird"}, "mc")
BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy lungs", 1: "pneumonia"}, "bin")
MULTILABEL = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "effusion", 1: "mass", 2: "nodule"}, "ml")
ORDINAL = TaskDescription("ORDINAL_REGRESSION", {0: "none", 1: "mild", 2: "severe"}, "grade")
KINDS = {"multiclass": MULTICLASS, "binary": BINARY, "multilabel": MULTILABEL}
WIDTH = {"multiclass": 3, "binary": 1, "multilabel": 3}


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    with hub_offline():
        yield


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    name = register_clip(tmp_path_factory.mktemp("clip"))
    return load_backbone(f"open_clip:{name}", "random", seed=3)


def _labels(desc: TaskDescription, n: int, g: torch.Generator) -> torch.Tensor:
    if desc.task_target.name == "MULTILABEL_CLASSIFICATION":
        y = torch.randint(0, 2, (n, desc.num_classes), generator=g)
        y[0], y[1] = 1, 0
        return y
    if desc.task_target.name == "BINARY_CLASSIFICATION":
        return (torch.arange(n) % 2).reshape(n, 1)
    return torch.arange(n) % desc.num_classes


def _episode(desc: TaskDescription, seed: int, n_query: int = 6) -> Task:
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(2, 3, 32, 32, generator=g), torch.randn(n_query, 3, 32, 32, generator=g)
    return Task((xs, _labels(desc, 2, g)), (xq, _labels(desc, n_query, g)), desc)


# -- prompts ---------------------------------------------------------------------------------------------
def test_prompts_are_built_from_the_class_names_with_the_template() -> None:
    assert class_prompts(MULTICLASS) == (("a photo of cat.",), ("a photo of dog.",), ("a photo of bird.",))
    assert class_prompts(BINARY, "an X-ray showing {class_name}") == (
        ("an X-ray showing healthy lungs",),
        ("an X-ray showing pneumonia",),
    )
    # an ensemble: one prompt per template in each group; a function of the name is a template too
    assert class_prompts(MULTICLASS, ["{}", lambda name: name.upper()])[1] == ("dog", "DOG")
    # multi-label: the labels, then each label's negative put into the template
    assert class_prompts(MULTILABEL, "a scan with {}") == (
        ("a scan with effusion",),
        ("a scan with mass",),
        ("a scan with nodule",),
        ("a scan with no effusion",),
        ("a scan with no mass",),
        ("a scan with no nodule",),
    )
    # one phrase for every label, as the MedIMeta authors' CLIPClassifier ("nothing")
    assert class_prompts(MULTILABEL, "{}", negative="nothing")[3:] == (("nothing",),) * 3


def test_bad_templates_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"template 'a photo' has no '\{\}' where the class name goes"):
        class_prompts(MULTICLASS, "a photo")
    with pytest.raises(ValueError, match=r"cannot be filled with a class name \(KeyError"):
        class_prompts(MULTICLASS, "a {modality} of {}")
    with pytest.raises(TypeError, match="non-empty list of them, got"):
        class_prompts(MULTICLASS, [])
    with pytest.raises(TypeError, match="must be a string or a function of the class name, got 3"):
        class_prompts(MULTICLASS, ["{}", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"negative must be one string \('no \{\}', or 'nothing'"):
        class_prompts(MULTILABEL, negative=["no {}", "without {}"])  # type: ignore[arg-type]


@pytest.mark.parametrize("desc", [ORDINAL, TaskDescription("REGRESSION", {}, "age")], ids=["ord", "reg"])
def test_ordinal_and_regression_tasks_are_refused(clip: Backbone, desc: TaskDescription) -> None:
    match = rf"does not support the {desc.task_target.name} task '{desc.task_identifier}'.*few-shot method"
    with pytest.raises(ValueError, match=match):
        class_prompts(desc)
    with pytest.raises(ValueError, match=match):
        zero_shot_logits(torch.ones(2, 4), torch.ones(3, 4), desc, 10.0)
    with pytest.raises(ValueError, match=match):
        ZeroShotClassifier(clip).predict(Task((torch.zeros(0), torch.zeros(0)), (torch.zeros(0), None), desc))


# -- logits ----------------------------------------------------------------------------------------------
def test_logits_are_cosine_similarities_times_the_logit_scale(clip: Backbone) -> None:
    """By hand, and as OpenCLIP's own forward pass (what the authors' CLIPClassifier multiplies)."""
    import open_clip

    model = clip.text_tower.model  # type: ignore[union-attr]
    model.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of cat.", "a photo of dog.", "a photo of bird."]
    tokens = open_clip.get_tokenizer(clip.identity.model)(prompts)
    with torch.no_grad():
        image, text = clip.model(x), model.encode_text(tokens)
        scale = model.logit_scale.exp()
        by_hand = (
            scale * (image / image.norm(dim=1, keepdim=True)) @ (text / text.norm(dim=1, keepdim=True)).T
        )
        image_features, text_features, clip_scale = model(x, tokens)
    clf = ZeroShotClassifier(clip)
    assert clf.logit_scale == pytest.approx(float(scale))
    assert clf.logit_scale == pytest.approx(1 / 0.07)
    logits = clf.logits(x, MULTICLASS)
    torch.testing.assert_close(logits, by_hand)
    torch.testing.assert_close(logits, clip_scale * image_features @ text_features.T)
    # binary: the positive class's score minus the negative's; multi-label: each label minus its negative
    binary = clf.logits(x, BINARY)
    tokens = open_clip.get_tokenizer(clip.identity.model)(
        ["a photo of healthy lungs.", "a photo of pneumonia."]
    )
    with torch.no_grad():
        sims = scale * F.normalize(image, dim=1) @ F.normalize(model.encode_text(tokens), dim=1).T
    torch.testing.assert_close(binary, (sims[:, 1] - sims[:, 0]).unsqueeze(1))
    ml = clf.logits(x, MULTILABEL)
    text_ml = clf.text_features(MULTILABEL)
    sims = scale * F.normalize(image, dim=1) @ text_ml.T
    torch.testing.assert_close(ml, sims[:, :3] - sims[:, 3:])


def test_an_ensemble_averages_the_normalised_prompt_embeddings(clip: Backbone) -> None:
    tower = clip.text_tower
    assert tower is not None
    with torch.no_grad():
        a, b = F.normalize(tower.encode_text(["cat", "a photo of a cat"]), dim=1)
    got = encode_prompts(tower, [["cat", "a photo of a cat"]])
    torch.testing.assert_close(got, F.normalize((a + b) / 2, dim=0).unsqueeze(0))
    clf = ZeroShotClassifier(clip, ["{}", "a photo of a {}"])
    torch.testing.assert_close(clf.text_features(MULTICLASS)[0], got[0])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gets_logits_the_metrics_read(clip: Backbone, kind: str) -> None:
    desc = KINDS[kind]
    episodes = [_episode(desc, seed) for seed in range(3)]
    clf = ZeroShotClassifier(clip, "a photo of {}.")
    logits = clf.predict(episodes[0])
    assert logits.shape == (6, WIDTH[kind])
    assert logits.dtype == torch.float32
    assert not logits.requires_grad
    metrics = compute_metrics(logits, episodes[0].query[1], desc)
    assert all(math.isfinite(metrics[m]) for m in ("auroc", "accuracy", "loss"))
    result = evaluate(clf, episodes, method="zero-shot", progress=False)
    assert [r["n_support"] for r in result.records] == [2, 2, 2]  # scored on the query sets only
    assert all(math.isfinite(r["auroc"]) for r in result.records)


def _toy_backbone(prompts: list[str]) -> Backbone:
    """Image features ``(N, P)`` as given; prompt ``i`` embeds as the ``i``-th unit vector."""
    index = {p: i for i, p in enumerate(prompts)}
    emb = nn.Embedding(len(prompts), len(prompts))
    emb.weight.data = torch.eye(len(prompts))
    tower = TextTower(emb, lambda texts: torch.tensor([index[t] for t in texts]), lambda m, t: m(t))
    pre = Preprocessing((1, len(prompts)), (0.0,), (1.0,), channels=1)
    return Backbone(nn.Flatten(), pre, BackboneIdentity("custom", "toy", "none"), text_tower=tower)


def test_the_positive_class_and_the_labels_are_read_the_right_way_round() -> None:
    """Images that look like their class (or labels) score AUROC 1 and accuracy 1; flipped labels, 0."""
    y = torch.tensor([[0], [1], [1], [0]])
    toy = _toy_backbone(["healthy lungs", "pneumonia"])
    images = F.one_hot(y[:, 0], 2).float().reshape(4, 1, 1, 2)
    clf = ZeroShotClassifier(toy, "{}", logit_scale=10.0)
    logits = clf.logits(images, BINARY)
    torch.testing.assert_close(logits, torch.tensor([[-10.0], [10.0], [10.0], [-10.0]]))
    assert compute_metrics(logits, y, BINARY)["auroc"] == 1.0
    assert compute_metrics(logits, 1 - y, BINARY)["auroc"] == 0.0
    # multi-label: an image shows each label it has and the negative of each it lacks
    names = ["effusion", "mass", "nodule"]
    toy = _toy_backbone([*names, *(f"no {n}" for n in names)])
    y = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]])
    images = torch.cat([y, 1 - y], dim=1).float().reshape(4, 1, 1, 6)
    logits = ZeroShotClassifier(toy, "{}", logit_scale=10.0).logits(images, MULTILABEL)
    assert torch.equal(logits > 0, y.bool())
    metrics = compute_metrics(logits, y, MULTILABEL)
    assert (metrics["auroc"], metrics["accuracy"]) == (1.0, 1.0)


def test_features_from_an_embedding_cache_give_the_same_logits(clip: Backbone) -> None:
    task = _episode(MULTICLASS, 1)
    with torch.no_grad():
        features = clip(task.query[0])
    cached = Task(task.support, (features, task.query[1]), MULTICLASS)
    on_images = ZeroShotClassifier(clip).predict(task)
    on_features = ZeroShotClassifier(clip, inputs="features").predict(cached)
    torch.testing.assert_close(on_features, on_images)


def test_zero_shot_is_deterministic_and_leaves_the_model_as_it_was(clip: Backbone) -> None:
    task = _episode(MULTILABEL, 2)
    clf = ZeroShotClassifier(clip)
    clip.train()
    try:
        first = clf.predict(task)
        assert clip.training  # its mode is restored
    finally:
        clip.eval()
    assert torch.equal(clf.predict(task), first)
    assert clf.text_features(MULTILABEL) is clf.text_features(MULTILABEL)  # embedded once
    again = load_backbone(f"open_clip:{clip.identity.model}", "random", seed=3)
    assert torch.equal(ZeroShotClassifier(again).predict(task), first)


# -- Hugging Face CLIP -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hf_clip(tmp_path_factory.mktemp("hf-clip"))


def test_a_hugging_face_clip_with_its_text_tower_scores_as_its_own_forward(hf_clip_folder: Path) -> None:
    import transformers as tf

    clip = load_backbone(f"hf:{hf_clip_folder}", text_tower=True)
    assert clip.num_features == 12  # the projection width: the joint image-text space
    assert clip.text_tower is not None
    assert clip.identity.to_dict()["options"] == {"text_tower": True}
    assert clip.preprocessing.input_size == (32, 32)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    clf = ZeroShotClassifier(clip)
    logits = clf.logits(x, MULTICLASS)
    model = tf.CLIPModel.from_pretrained(hf_clip_folder, local_files_only=True).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(hf_clip_folder, local_files_only=True)
    prompts = [p for (p,) in class_prompts(MULTICLASS)]
    with torch.no_grad():
        out = model(pixel_values=x, **tokenizer(prompts, padding=True, return_tensors="pt"))
    torch.testing.assert_close(logits, out.logits_per_image)
    # without the option, a CLIP folder is the benchmark's image classifier, without a text tower
    plain = load_backbone(f"hf:{hf_clip_folder}")
    with pytest.raises(ValueError, match=r"a 'hf:' backbone is the image classifier alone.*text_tower=True"):
        ZeroShotClassifier(plain)
    with pytest.raises(TypeError, match="the option text_tower must be True or False, got 'yes'"):
        load_backbone(f"hf:{hf_clip_folder}", text_tower="yes")
    first = load_backbone(f"hf:{hf_clip_folder}", "random", seed=1, text_tower=True)
    again = load_backbone(f"hf:{hf_clip_folder}", "random", seed=1, text_tower=True)
    binary = ZeroShotClassifier(first).logits(x, BINARY)
    assert torch.equal(binary, ZeroShotClassifier(again).logits(x, BINARY))


# -- backbones without a text tower ----------------------------------------------------------------------
def test_a_backbone_without_a_text_tower_is_refused_by_name() -> None:
    pre = Preprocessing((2, 2), (0.0,), (1.0,), channels=1)
    plain = Backbone(nn.Flatten(), pre, BackboneIdentity("timm", "resnet18", "random:seed=0"))
    with pytest.raises(ValueError, match=r"backbone timm:resnet18 has no text tower.*'open_clip:<model>'"):
        ZeroShotClassifier(plain)
    with pytest.raises(ValueError, match=r"backbone Linear has no text tower"):
        ZeroShotClassifier(nn.Linear(2, 2))
    hf = Backbone(nn.Flatten(), pre, BackboneIdentity("hf", "openai/clip-vit-base-patch16", "sha256:0"))
    with pytest.raises(ValueError, match=r"a 'hf:' backbone is the image classifier alone.*text_tower=True"):
        find_text_tower(hf)
    with pytest.raises(TypeError, match=r"backbone must be an nn\.Module with a text tower, got str"):
        ZeroShotClassifier("open_clip:ViT-B-32")  # type: ignore[arg-type]


def test_a_model_without_a_logit_scale_needs_one_given() -> None:
    toy = _toy_backbone(["a", "b"])
    with pytest.raises(ValueError, match=r"\(Embedding\) has no scalar logit_scale; pass logit_scale="):
        ZeroShotClassifier(toy)
    with pytest.raises(ValueError, match="logit_scale must be positive, got 0"):
        ZeroShotClassifier(toy, logit_scale=0)


# -- the protocol method ---------------------------------------------------------------------------------
def _ctx(backbone: nn.Module, **section: Any) -> Any:
    """What zero_shot_learner reads of a MethodContext (the run's own backbone wiring is not needed)."""
    return SimpleNamespace(
        build_backbone=lambda: (backbone, 16),
        section=section_from_dict("zero-shot", ZeroShotConfig, section),
        target=SimpleNamespace(dataset_id="chest"),
        device=torch.device("cpu"),
    )


def test_the_method_is_registered_with_its_own_section() -> None:
    spec = get_method("zero-shot")
    assert (spec.train, spec.section, spec.config, spec.trains) == (None, "zero-shot", ZeroShotConfig, False)
    assert "zero-shot" in spec.reads.keys
    assert "backbone" in spec.reads.keys
    assert section_from_dict("zero-shot", ZeroShotConfig, None) == ZeroShotConfig(
        ("a photo of {}.",), "no {}"
    )
    with pytest.raises(ValueError, match=r"\[zero-shot\] template: template 'a photo' has no '\{\}'"):
        section_from_dict("zero-shot", ZeroShotConfig, {"template": "a photo"})
    with pytest.raises(TypeError, match="non-empty list of them, got 3"):
        section_from_dict("zero-shot", ZeroShotConfig, {"template": 3})


def test_the_method_scores_the_query_sets_of_the_episodes(clip: Backbone) -> None:
    wrapped = nn.Sequential(nn.Identity(), clip)  # a wrapper around the backbone still has its text tower
    learner = get_method("zero-shot").predictor(_ctx(wrapped, template=["{}", "a photo of {}."]), None)
    assert isinstance(learner, ZeroShotClassifier)
    assert len(learner.templates) == 2
    assert learner.inputs == "features"  # the run hands it cached features (frozen_features)
    assert get_method("zero-shot").frozen_features
    episodes = [_episode(BINARY, seed) for seed in range(2)]
    with torch.no_grad():
        embedded = [Task(t.support, (clip(t.query[0]), t.query[1]), t.description) for t in episodes]
    result = evaluate(learner, embedded, method="zero-shot", progress=False)
    direct = evaluate(ZeroShotClassifier(clip, ["{}", "a photo of {}."]), episodes, progress=False)
    assert [r["auroc"] for r in result.records] == [r["auroc"] for r in direct.records]


def test_the_method_refuses_a_backbone_without_a_text_tower_with_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"method 'zero-shot' on chest: backbone Sequential has no text tower.*"
        r"set \[backbone\] name = 'open_clip:<model>'",
    ):
        zero_shot_learner(_ctx(nn.Sequential(nn.Flatten())), None)


def _run_config(
    root: Path, out: Path, backbone: dict[str, Any], methods: list[str], cache: Path | None = None
) -> Any:
    from torchcross.protocol.config import config_from_dict

    run: dict[str, Any] = {"out_dir": str(out), "plot": False, "num_threads": 1, "logger": "none"}
    if cache is not None:
        run["embedding_cache"] = str(cache)
    return config_from_dict(
        {
            "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
            "evaluation": {"methods": methods, "n_episodes": 3, "n_shot": 2, "n_query": 4},
            "backbone": backbone,
            "finetune": {"steps": 2, "head_init": "zero"},
            "zero-shot": {"template": "a scan of {}"},
            "run": run,
        }
    )


def test_torchcross_run_scores_zero_shot_on_the_linear_probes_episodes_and_cached_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[backbone] name = "open_clip:local-dir:..."``: both methods on one episode set, one feature pass."""
    import torchcross.data.embeddings as emb
    from torchcross.cli.demo_data import write_demo_medimeta
    from torchcross.protocol import run_protocol

    root = write_demo_medimeta(tmp_path / "data", size=16)
    clip = {"name": f"open_clip:local-dir:{save_open_clip_folder(tmp_path / 'clip')}"}
    passes = []
    forward = emb._forward
    monkeypatch.setattr(emb, "_forward", lambda *args: passes.append(1) or forward(*args))
    config = _run_config(root, tmp_path / "out", clip, ["linear-probe", "zero-shot"])
    result = run_protocol(config, progress=False, log=None)
    rows = {m: result.episodes.where(method=m).to_records() for m in ("linear-probe", "zero-shot")}
    keys = ("episode", "task_identifier", "n_support", "n_query")
    same = [[r[k] for k in keys] for r in rows["linear-probe"]]
    assert [[r[k] for k in keys] for r in rows["zero-shot"]] == same
    assert len(rows["zero-shot"]) == 3
    assert all(0.0 <= r["auroc"] <= 1.0 for r in rows["zero-shot"])
    assert len(list((tmp_path / "out" / "embeddings").glob("*.safetensors"))) == 1  # shared by both
    first = len(passes)
    assert first > 0
    # another run, zero-shot alone, on the first run's cache: no backbone pass, the same scores
    other = _run_config(root, tmp_path / "again", clip, ["zero-shot"], tmp_path / "out" / "embeddings")
    again = run_protocol(other, progress=False, log=None).episodes.where(method="zero-shot").to_records()
    assert len(passes) == first
    assert [r["auroc"] for r in again] == [r["auroc"] for r in rows["zero-shot"]]


def test_torchcross_run_refuses_zero_shot_with_a_backbone_without_a_text_tower(tmp_path: Path) -> None:
    from torchcross.cli.demo_data import write_demo_medimeta
    from torchcross.protocol import run_protocol

    root = write_demo_medimeta(tmp_path / "data", size=16)
    config = _run_config(root, tmp_path / "out", {"name": "conv4", "weights": "random"}, ["zero-shot"])
    with pytest.raises(
        ValueError,
        match=r"method 'zero-shot' needs a backbone with a text tower, but \[backbone\] name = 'conv4' has "
        r"none \(backbone Conv4 has no text tower.*set \[backbone\] name to a CLIP-style backbone",
    ):
        run_protocol(config, progress=False, log=None)  # refused by its check, before anything runs


def test_its_results_depend_on_its_prompts_and_backbone_not_on_other_methods_settings() -> None:
    from torchcross.protocol.config import config_from_dict
    from torchcross.protocol.data import TargetPlan
    from torchcross.protocol.methods import method_context, method_fingerprint

    def fingerprint(**sections: dict[str, Any]) -> str:
        raw: dict[str, dict[str, Any]] = {
            "data": {"root": "data", "targets": ["chest"]},
            "evaluation": {"methods": ["zero-shot"]},
            "run": {"out_dir": "out"},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        config = config_from_dict(raw)
        target = TargetPlan("chest", ("pneumonia",), ())
        cpu = torch.device("cpu")
        ctx = method_context(
            config, target, "zero-shot", 0, in_channels=3, image_size=32, device=cpu, log=lambda _m: None
        )
        return method_fingerprint(ctx)

    base = fingerprint()
    assert fingerprint(**{"zero-shot": {"template": "an X-ray of {}"}}) != base
    assert fingerprint(**{"zero-shot": {"negative": "nothing"}}) != base
    assert fingerprint(backbone={"weights": "random"}) != base
    assert fingerprint(evaluation={"n_shot": 3}) != base  # other episodes
    assert fingerprint(finetune={"steps": 7}, maml={"steps": 3}) == base
