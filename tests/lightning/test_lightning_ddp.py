"""Lightning `Trainer(strategy="ddp", devices=2)` on CPU: modules train like the plain loop, resume exactly.

The Lightning run is a script (``lightning_ddp_script.py``) started in a subprocess: Lightning's
``ddp`` strategy starts rank 1 by re-running the script, which it cannot do for pytest itself.
One run covers every module (starting processes is slow); the tests read its results.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
import distributed_helpers as h
import lightning_helpers as lh

from torchcross.evaluation import evaluate
from torchcross.learners import MAML, FineTuner, ProtoNet
from torchcross.lightning.modules import episode_loss

SCRIPT = Path(__file__).with_name("lightning_ddp_script.py")


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lightning_ddp")
    lh.run_script(SCRIPT, str(out), cwd=out)
    return torch.load(out / "results.pt", weights_only=False)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = "") -> None:
    for k, v in b.items():
        torch.testing.assert_close(a[prefix + k], v, rtol=1e-12, atol=1e-12, msg=k)


def test_maml_module_matches_the_plain_loop_and_resumes_exactly(results: dict[str, Any]) -> None:
    reference = h.train_maml({"meta_sgd": True, "head_init": "kaiming"}, 0, 1)[0].state_dict()
    _close(results["maml/uninterrupted"], reference, "learner.")
    for k, v in results["maml/uninterrupted"].items():
        assert torch.equal(results["maml/resumed"][k], v), k
    assert results["maml/consumed"] == h.STEPS


def test_protonet_module_matches_the_plain_loop(results: dict[str, Any]) -> None:
    _close(results["protonet/uninterrupted"], h.train_protonet(0, 1).state_dict(), "learner.")


def test_multitask_module_matches_the_plain_loop_and_resumes_exactly(results: dict[str, Any]) -> None:
    model, _ = h.train_pretrainer(0, 1)
    params = dict(model.named_parameters())
    _close(results["pretrainer/uninterrupted"], {k: v.detach() for k, v in params.items()}, "pretrainer.")
    for k, v in results["pretrainer/uninterrupted"].items():
        assert torch.equal(results["pretrainer/resumed"][k], v), k


def test_evaluation_under_inference_mode_equals_the_mean_episode_loss(results: dict[str, Any]) -> None:
    tasks = [h.make_task(h.DESCS[i % 4], 5000 + i) for i in range(4)]
    maml = MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2, meta_sgd=True, head_init="kaiming")
    maml.load_state_dict({k[len("learner.") :]: v for k, v in results["maml/resumed"].items()})
    assert results["maml/val_loss"] == pytest.approx(float(episode_loss(maml.predict, tasks)), rel=1e-6)
    protonet = ProtoNet(h.backbone())
    protonet.load_state_dict({k[len("learner.") :]: v for k, v in results["protonet/uninterrupted"].items()})
    assert results["protonet/val_loss"] == pytest.approx(
        float(episode_loss(protonet.predict, tasks)), rel=1e-6
    )
    tuner = FineTuner(h.backbone(), 4, num_steps=3, lr=0.1)
    assert results["finetuner/test_loss"] == pytest.approx(
        float(episode_loss(tuner.predict, tasks)), rel=1e-6
    )


def test_logged_auroc_and_accuracy_are_means_over_both_ranks_episodes(results: dict[str, Any]) -> None:
    tasks = [h.make_task(h.DESCS[i % 4], 5000 + i) for i in range(4)]  # 2 on each rank
    maml = MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2, meta_sgd=True, head_init="kaiming")
    maml.load_state_dict({k[len("learner.") :]: v for k, v in results["maml/resumed"].items()})
    tuner = FineTuner(h.backbone(), 4, num_steps=3, lr=0.1)
    for learner, logged, split in (
        (maml, "maml/val_scores", "val"),
        (tuner, "finetuner/test_scores", "test"),
    ):
        summary = evaluate(learner, tasks, progress=False).summary()
        for name in ("auroc", "accuracy"):
            assert results[logged][f"{split}_{name}"] == pytest.approx(summary[name].mean, rel=1e-6), name


def test_the_lightning_recipe_of_the_docs_runs_on_two_ranks(tmp_path: Path) -> None:
    page = (lh.ROOT / "docs" / "scaling-out.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[^\n]*\n(.*?)^```", page, re.DOTALL | re.MULTILINE)
    (recipe,) = [b for b in blocks if "\nDEVICES = 1  #" in b]
    script = tmp_path / "train.py"
    script.write_text(recipe.replace("\nDEVICES = 1  #", "\nDEVICES = 2  #"), encoding="utf-8")
    done = lh.run_script(script, cwd=tmp_path)
    # both ranks print (lines may interleave): the resumed stream, the logged keys, evaluate()'s AUROC
    out = done.stdout
    assert (out.count("20"), out.count("'val_auroc'"), out.count("True"), out.count("False")) == (
        2,
        2,
        2,
        0,
    ), out
