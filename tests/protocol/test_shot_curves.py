"""Shot curves (issue 22, item 3): ``[evaluation] shots`` evaluates every method at every shot count on
one fixed episode set per shot count, trains once, writes an ``n_shot`` column and ``shots.png``; unset,
a run is what it was (files, fingerprints)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.evaluation.plotting import plot_shot_curve
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol import run_protocol
from torchcross.protocol.config import config_from_dict
from torchcross.protocol.fingerprint import EPISODE_READS, RESULT_READS, fingerprint, fingerprint_settings
from torchcross.protocol.methods import method_context, method_fingerprint
from torchcross.protocol.report import shot_curve_labels

DS, TASK = "digits_scan_a", "even digit"
TARGET = f"{DS}/{TASK}"
EPISODES = 3
LABELS = ("conv4 #1", "conv4 #2")  # two [[backbones]] of one name
FILE = "even_digit.json"  # the task's file name


def _raw(root: Path, out: Path, **evaluation: object) -> dict[str, object]:
    return {
        "data": {"root": str(root), "targets": [TARGET], "min_class_size": 0},
        "evaluation": {
            "methods": ["scratch", "linear-probe", "supervised"],
            "n_episodes": EPISODES,
            **evaluation,
        },
        "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
        "finetune": {"steps": 2},
        "supervised": {"steps": 2, "batch_size": 16, "val_every": 2, "val_batches": 1, "bootstrap": 20},
        "run": {"out_dir": str(out), "plot": True, "num_threads": 1},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """A shot curve (``shots = [1, 5]``) and the plain run at 5 shots (``shots`` unset), on tiny data."""
    tmp = tmp_path_factory.mktemp("shot-curves")
    root = write_demo_medimeta(tmp / "data", size=16)
    curve = config_from_dict(_raw(root, tmp / "curve", shots=[5, 1]))
    plain = config_from_dict(_raw(root, tmp / "plain", n_shot=5))
    return (
        (tmp / "curve", run_protocol(curve, progress=False, log=None)),
        (tmp / "plain", run_protocol(plain, progress=False, log=None)),
    )


def test_results_have_an_n_shot_column_and_rows_per_shot_count(runs) -> None:
    (out, result), _ = runs
    episodes = ResultsTable.read_csv(out / "episodes.csv")
    assert "n_shot" in episodes.columns
    for method in ("scratch", "linear-probe"):
        for k in (1, 5):
            assert sorted(episodes.where(method=method, n_shot=k).column("episode")) == list(range(EPISODES))
    summary = ResultsTable.read_csv(out / "results.csv")
    keys = [(r["method"], r["n_shot"]) for r in summary]
    assert keys == [
        ("scratch", 1),
        ("scratch", 5),
        ("linear-probe", 1),
        ("linear-probe", 5),
        ("supervised", None),
    ]
    paired = ResultsTable.read_csv(out / "paired.csv")
    assert sorted(paired.column("n_shot")) == [1, 5]  # one pair per shot count: never across shot counts
    assert all(r["n"] == EPISODES for r in paired)
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["config"]["evaluation"]["shots"] == [1, 5]
    assert {r["n_shot"] for r in doc["episodes"]} == {1, 5}
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.splitlines()[0].startswith("| method | target | task_target | n_shot |")
    assert "within a shot count" in md
    assert result.summary.where(method="scratch", n_shot=1).rows


def test_one_episode_file_and_evaluation_per_shot_count_and_training_once(runs) -> None:
    (out, _), _ = runs
    for k in (1, 5):
        episodes = json.loads((out / "episodes" / f"shot-{k}" / DS / FILE).read_text("utf-8"))
        assert episodes["sampling"]["n_support_samples_per_class"] == k
        for method in ("scratch", "linear-probe"):
            saved = json.loads((out / "evaluations" / f"shot-{k}" / DS / f"{method}.json").read_text("utf-8"))
            assert {r["n_shot"] for r in saved["records"]} == {k}
    assert not (out / "episodes" / DS).exists()
    # the per-task method has no episodes: evaluated once, in the folder of a run without shots
    assert (out / "evaluations" / DS / "supervised.json").is_file()
    assert not list((out / "evaluations").glob("shot-*/*/supervised.json"))


def test_a_shot_count_is_the_plain_run_at_that_shot_count(runs) -> None:
    """Same seed, same episodes: the 5-shot episode set and scores of the curve are the plain 5-shot run's,
    and so are their fingerprints."""
    (curve_out, curve), (plain_out, plain) = runs
    a = json.loads((curve_out / "episodes" / "shot-5" / DS / FILE).read_text("utf-8"))
    b = json.loads((plain_out / "episodes" / DS / FILE).read_text("utf-8"))
    assert a == b
    assert a["sampling"]["fingerprint"] == fingerprint(
        curve.plan.config.at_shot(5), EPISODE_READS, target=TARGET
    )
    assert a["sampling"]["fingerprint"] == fingerprint(plain.plan.config, EPISODE_READS, target=TARGET)
    for method in ("scratch", "linear-probe"):
        mine = curve.episodes.where(method=method, n_shot=5).column("auroc")
        assert mine == plain.episodes.where(method=method).column("auroc")
        saved = json.loads((curve_out / "evaluations" / "shot-5" / DS / f"{method}.json").read_text("utf-8"))
        ctx = method_context(
            plain.plan.config,
            plain.plan.targets[0],
            method,
            0,
            in_channels=plain.plan.in_channels,
            image_size=plain.plan.image_size,
            device=plain.plan.device,
            log=lambda _: None,
        )
        assert saved["fingerprint"] == method_fingerprint(ctx)
    one = json.loads((curve_out / "episodes" / "shot-1" / DS / FILE).read_text("utf-8"))
    assert one["episodes"] != a["episodes"]


def test_unset_shots_writes_what_a_run_without_the_key_writes(runs) -> None:
    """No ``n_shot`` column, no shot folders, no shots.png; the fingerprints are those of the settings
    without the key (``shots`` is read by no artefact)."""
    _, (out, result) = runs
    assert "n_shot" not in ResultsTable.read_csv(out / "episodes.csv").columns
    assert "n_shot" not in ResultsTable.read_csv(out / "results.csv").columns
    assert "n_shot" not in ResultsTable.read_csv(out / "paired.csv").columns
    assert not list(out.glob("*/shot-*"))
    assert not (out / "shots.png").exists()
    assert (out / "auroc.png").is_file()
    config = result.plan.config
    assert config.shot_counts == (5,)
    assert config.at_shot(5) == config
    assert "shots" not in json.dumps(fingerprint_settings(config, EPISODE_READS, RESULT_READS))


def test_a_second_run_reuses_every_shot_count(runs) -> None:
    (_, first), _ = runs
    lines: list[str] = []
    again = run_protocol(first.plan.config, progress=False, log=lines.append)
    assert again.episodes.column("auroc") == first.episodes.column("auroc")
    assert (
        sum("reusing finished evaluation" in line for line in lines) == 5
    )  # 2 methods x 2 shots + supervised


def test_a_shot_count_added_later_reuses_the_other_shot_counts(runs, tmp_path: Path) -> None:
    (done, first), _ = runs
    out = tmp_path / "curve"
    shutil.copytree(done, out)
    raw = _raw(first.plan.config.data.root, out, shots=[1, 5, 10])
    raw["evaluation"]["methods"] = ["scratch", "linear-probe"]  # type: ignore[index]
    lines: list[str] = []
    again = run_protocol(config_from_dict(raw), progress=False, log=lines.append)
    assert sum("reusing finished evaluation" in line for line in lines) == 4
    assert sorted(set(again.episodes.column("n_shot"))) == [1, 5, 10]
    for k in (1, 5):
        mine = again.episodes.where(method="scratch", n_shot=k).column("auroc")
        assert mine == first.episodes.where(method="scratch", n_shot=k).column("auroc")
    assert (out / "episodes" / "shot-10" / DS / FILE).is_file()


def test_the_shot_curve_plot_draws_a_line_and_a_band_per_method(runs) -> None:
    (out, result), _ = runs
    assert (out / "shots.png").stat().st_size > 0
    rows = ResultsTable.read_csv(out / "results.csv")
    title, labels = shot_curve_labels(result.plan, rows)
    fig = plot_shot_curve(rows, None, title=title, labels=labels)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {labels["scratch"], labels["linear-probe"], labels["supervised"], "chance"}
    assert [float(x) for x in lines[labels["scratch"]].get_xdata()] == [1.0, 5.0]
    assert lines[labels["supervised"]].get_linestyle() == ":"
    assert len(ax.collections) == 3  # fill_between: one band per method
    assert "mean (line) and 95% CI (band)" in title
    assert labels["scratch"] == f"scratch (CI: t, {EPISODES} episodes per shot count)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == [labels["scratch"], labels["linear-probe"]]


def test_the_shot_curve_plot_draws_a_line_per_method_and_backbone() -> None:
    rows = [
        {
            "method": "linear-probe",
            "backbone": b,
            "n_shot": k,
            "auroc_mean": v,
            "auroc_ci_low": v - 0.1,
            "auroc_ci_high": v + 0.1,
        }
        for b, base in (("timm:resnet18", 0.6), ("open_clip:ViT-B-32", 0.7))
        for k, v in ((1, base), (2, base + 0.05), (3, base + 0.08))
    ]
    ax = plot_shot_curve(rows, chance=None).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "linear-probe (timm:resnet18)",
        "linear-probe (open_clip:ViT-B-32)",
    ]
    assert len(ax.collections) == 2


def test_the_shot_curve_plot_refuses_bad_rows() -> None:
    with pytest.raises(KeyError, match="plot_shot_curve needs column 'n_shot'"):
        plot_shot_curve([{"method": "a", "auroc_mean": 0.5, "auroc_ci_low": 0.4, "auroc_ci_high": 0.6}])
    with pytest.raises(ValueError, match="empty table"):
        plot_shot_curve(ResultsTable([], ["method", "n_shot", "auroc_mean", "auroc_ci_low", "auroc_ci_high"]))
    row = {"method": "a", "n_shot": 0, "auroc_mean": 0.5, "auroc_ci_low": 0.4, "auroc_ci_high": 0.6}
    with pytest.raises(ValueError, match="n_shot = 0 in a row of 'a' is not a positive integer"):
        plot_shot_curve([row])


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], TypeError, r"\[evaluation\] shots must be a non-empty list of distinct integers >= 1, got \[\]"),
        (
            [0],
            TypeError,
            r"\[evaluation\] shots must be a non-empty list of distinct integers >= 1, got \[0\]",
        ),
        ([5, 5], TypeError, r"\[evaluation\] shots must be a non-empty list of distinct integers"),
        ("many", TypeError, r"\[evaluation\] shots must be a non-empty list .* got 'many'"),
        ([1, 2.5], TypeError, r"\[evaluation\] shots must be a non-empty list"),
        ([1, 10**9], ValueError, r"\[evaluation\] shots: \[1000000000\] exceed"),
    ],
)
def test_bad_shots_name_the_key(value: object, error: type[Exception], match: str) -> None:
    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}, "evaluation": {"shots": value}}
    with pytest.raises(error, match=match):
        config_from_dict(raw)


def test_shots_are_sorted_and_one_number_is_a_list() -> None:
    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
    assert config_from_dict({**raw, "evaluation": {"shots": [30, 1, 5]}}).evaluation.shots == (1, 5, 30)
    assert config_from_dict({**raw, "evaluation": {"shots": 7}}).shot_counts == (7,)
    # n_shot is then not used (a saved config holds both: it reads back)
    assert config_from_dict({**raw, "evaluation": {"n_shot": 3, "shots": [1, 5]}}).shot_counts == (1, 5)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    """A model comparison: ``[[backbones]]`` two Conv4 widths (random weights from ``[backbone]``)."""
    tmp = tmp_path_factory.mktemp("backbones")
    root = write_demo_medimeta(tmp / "data", size=16)
    raw = _raw(root, tmp / "out", shots=[1, 5], n_episodes=2)
    raw["evaluation"]["methods"] = ["scratch", "linear-probe"]  # type: ignore[index]
    raw["backbones"] = [{"name": "conv4", "hidden": 8}, {"name": "conv4", "hidden": 4}]
    return tmp / "out", run_protocol(config_from_dict(raw), progress=False, log=None)


def test_backbones_run_every_method_with_each_backbone_in_its_own_folder(compared) -> None:
    out, result = compared
    assert [b.weights for b in result.plan.config.backbones] == ["random", "random"]  # from [backbone]
    summary = ResultsTable.read_csv(out / "results.csv")
    assert summary.columns[:2] == ["method", "backbone"]
    keys = {(r["method"], r["backbone"], r["n_shot"]) for r in summary}
    assert keys == {(m, b, k) for m in ("scratch", "linear-probe") for b in LABELS for k in (1, 5)}
    for folder_name in ("conv4__1", "conv4__2"):
        folder = out / "backbones" / folder_name
        assert (folder / "episodes" / "shot-1" / DS / FILE).is_file()
        assert (folder / "evaluations" / "shot-5" / DS / "linear-probe.json").is_file()
    # the same episodes for every backbone; pairs across backbones and methods, within a shot count
    a, b = (
        json.loads((out / "backbones" / n / "episodes" / "shot-5" / DS / FILE).read_text("utf-8"))
        for n in ("conv4__1", "conv4__2")
    )
    assert a["episodes"] == b["episodes"]
    paired = ResultsTable.read_csv(out / "paired.csv")
    assert ("scratch (conv4 #1)", "scratch (conv4 #2)") in {(r["method_a"], r["method_b"]) for r in paired}
    assert set(paired.column("n_shot")) == {1, 5}
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [b["hidden"] for b in doc["config"]["backbones"]] == [8, 4]
    assert {r["backbone"] for r in doc["episodes"]} == {"conv4 #1", "conv4 #2"}


def test_backbones_plot_a_line_per_method_and_backbone(compared) -> None:
    out, _ = compared
    assert (out / "shots.png").stat().st_size > 0
    assert (out / "auroc.png").stat().st_size > 0
    ax = plot_shot_curve(ResultsTable.read_csv(out / "results.csv"), chance=None).axes[0]
    assert sorted(line.get_label() for line in ax.get_lines()) == [
        "linear-probe (conv4 #1)",
        "linear-probe (conv4 #2)",
        "scratch (conv4 #1)",
        "scratch (conv4 #2)",
    ]
    assert len(ax.collections) == 4


def test_a_backbone_comparison_resumes(compared) -> None:
    _, first = compared
    lines: list[str] = []
    again = run_protocol(first.plan.config, progress=False, log=lines.append)
    assert sum("reusing finished evaluation" in line for line in lines) == 8  # 2 backbones x 2 methods x 2
    assert again.episodes.column("auroc") == first.episodes.column("auroc")


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], TypeError, r"backbones must be a non-empty list of tables"),
        ("conv4", TypeError, r"backbones must be a non-empty list of tables"),
        ([{"name": "conv5"}], ValueError, r"\[backbones #1\] name"),
        (
            [{"name": "conv4"}, {"name": "conv4"}],
            ValueError,
            r"\[\[backbones\]\] #2 repeats an earlier backbone",
        ),
    ],
)
def test_bad_backbones_are_refused(value: object, error: type[Exception], match: str) -> None:
    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}, "backbones": value}
    with pytest.raises(error, match=match):
        config_from_dict(raw)


def test_backbones_round_trip_through_toml() -> None:
    import tomllib

    from torchcross.protocol.config import config_to_dict, config_to_toml

    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}, "backbone": {"weights": "random"}}
    config = config_from_dict({**raw, "backbones": [{"name": "conv4", "hidden": 4}, {"name": "resnet18"}]})
    assert config_from_dict(tomllib.loads(config_to_toml(config))) == config
    assert config_from_dict(config_to_dict(config)) == config
    labels = [label for label, _ in config.backbone_runs()]
    assert labels == ["conv4", "resnet18"]
    same = config_from_dict({**raw, "backbones": [{"name": "conv4", "hidden": 4}, {"name": "conv4"}]})
    assert [label for label, _ in same.backbone_runs()] == ["conv4 #1", "conv4 #2"]


def test_a_shot_curve_of_a_timm_a_hugging_face_and_an_open_clip_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "done when": three foundation backbones (tiny, saved offline) in one run with
    ``shots = [1, 5]``: results per backbone and shot count, and the curve plot; the linear probe reads
    each backbone's cached features, computed once for both shot counts."""
    from tiny_foundation_models import save_hf_models, save_open_clip_folder, save_timm_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    root = write_demo_medimeta(tmp_path / "data", size=16)
    hf = save_hf_models(tmp_path / "hf", ("vit",))["vit"]
    backbones = [
        {"name": "timm:vit_tiny_patch16_224", "weights": str(save_timm_folder(tmp_path / "timm"))},
        {"name": f"hf:{hf}"},
        {"name": f"open_clip:local-dir:{save_open_clip_folder(tmp_path / 'clip')}"},
    ]
    raw = _raw(root, tmp_path / "out", shots=[1, 5], n_episodes=2, n_query=4, methods=["linear-probe"])
    del raw["backbone"]
    raw["backbones"] = backbones
    raw["run"]["logger"] = "none"  # type: ignore[index]
    result = run_protocol(config_from_dict(raw), progress=False, log=None)
    names = ["timm:vit_tiny_patch16_224", "hf:vit", "open_clip:clip"]  # local folders by their last part
    summary = ResultsTable.read_csv(tmp_path / "out" / "results.csv")
    assert {(r["backbone"], r["n_shot"]) for r in summary} == {(b, k) for b in names for k in (1, 5)}
    assert all(0.0 <= r["auroc"] <= 1.0 for r in result.episodes)
    assert (tmp_path / "out" / "shots.png").stat().st_size > 0
    for label, config in result.plan.config.backbone_runs():
        assert label in names
        assert len(list((Path(config.run.out_dir) / "embeddings").glob("*.safetensors"))) == 1
