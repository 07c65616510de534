"""Hostile artefacts of a run: edited episode sets and evaluation records, flipped checkpoint bytes,
FIFOs in place of files, damaged curve CSVs and results files (issue 19)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from reliability_helpers import no_hang, scores, small_root, tiny_config

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset import EpisodeSet, sample_episode_set
from torchcross.evaluation.loggers import CSVLogger
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol import run_protocol, training
from torchcross.protocol.training import CheckpointError, train_steps
from torchcross.tasks.task import TaskDescription


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return run_protocol(
        tiny_config(data_root, tmp_path_factory.mktemp("ref") / "out"), progress=False, log=None
    )


def _binary_source(n: int = 40) -> TensorTaskSource:
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "toy/sick")
    return TensorTaskSource(
        torch.randn(n, 2, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 2, d
    )


def _saved_set(tmp_path: Path) -> tuple[Path, TensorTaskSource, dict]:
    src = _binary_source()
    path = tmp_path / "sick.json"
    sample_episode_set(src, n_episodes=3, n_shot=2, n_query=2).save(path)
    return path, src, json.loads(path.read_text())


# -- 1. stored episodes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda e: e.update(support=[e["support"][0]] * 2 + e["support"][2:]),
            "support lists example .* more than once",
        ),
        (
            lambda e: e.update(query=[e["query"][0]] * 2 + e["query"][2:]),
            "query lists example .* more than once",
        ),
        (lambda e: e.update(query=[e["support"][0], *e["query"][1:]]), "support and query share examples"),
        (lambda e: e.update(support=[40, *e["support"][1:]]), "support has 4 indices"),
        (
            lambda e: e.update(support_labels=[-1, *e["support_labels"][1:]]),
            r"support labels must be .* 0\.\.1",
        ),
        (lambda e: e.update(query_labels=[2, *e["query_labels"][1:]]), r"query labels must be .* 0\.\.1"),
        (lambda e: e.update(support=[0.5, *e["support"][1:]]), "support indices must be whole numbers"),
    ],
)
def test_a_malformed_episode_is_refused_naming_the_file_and_the_episode(tmp_path: Path, edit, match) -> None:
    path, src, data = _saved_set(tmp_path)
    edit(data["episodes"][1])
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"sick\.json.*episode 1: {match}"):
        EpisodeSet.load(path)
    with pytest.raises(ValueError, match=rf"sick\.json.*episode 1: {match}"):
        EpisodeSet.load(path, src)


def test_edited_labels_are_refused_against_the_source(tmp_path: Path) -> None:
    path, src, data = _saved_set(tmp_path)
    episode = data["episodes"][2]
    episode["query_labels"] = [1 - y for y in episode["query_labels"]]  # still 0/1: in range
    path.write_text(json.dumps(data))
    loaded = EpisodeSet.load(path)  # without the source only the range can be checked
    with pytest.raises(ValueError, match=r"sick\.json.*episode 2: its query labels do not match.*re-sample"):
        EpisodeSet.load(path, src)
    with pytest.raises(ValueError, match=r"episode 2: its query labels do not match"):
        loaded.as_dataset(src)


def test_a_protocol_episode_file_that_is_not_what_the_seed_draws_is_redrawn(
    data_root: Path, tmp_path: Path, reference
) -> None:
    """An episode swapped for another valid one passes every check of the file itself: the protocol
    draws the episodes from the seed and compares, so the edited file is reported and never used."""
    config = tiny_config(data_root, tmp_path / "out", evaluation={"methods": ["IM-PT"]})
    run_protocol(config, progress=False, log=None)
    path = tmp_path / "out" / "episodes" / "tgt" / "abnormal.json"
    original = path.read_text()
    data = json.loads(original)
    episode = data["episodes"][1]
    label = episode["support_labels"][0]
    # an example of the same class from another episode, unused in this one
    donor = data["episodes"][0]["support"] + data["episodes"][2]["support"]
    donor_labels = data["episodes"][0]["support_labels"] + data["episodes"][2]["support_labels"]
    used = set(episode["support"]) | set(episode["query"])
    episode["support"][0] = next(i for i, y in zip(donor, donor_labels) if y == label and i not in used)
    path.write_text(json.dumps(data))
    EpisodeSet.load(path)  # a well-formed file
    for done in (tmp_path / "out" / "evaluations").rglob("*.json"):
        done.unlink()
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    assert any(
        "warning" in line and "abnormal.json" in line and "episode 1 differs from what seed 0 draws" in line
        for line in lines
    ), lines
    assert path.read_text() == original
    assert scores(result) == [r for r in scores(reference) if r["method"] == "scratch"]


def test_untouched_artefacts_are_reused_without_a_warning(data_root: Path, tmp_path: Path, reference) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    run_protocol(config, progress=False, log=None)
    episodes = tmp_path / "out" / "episodes" / "tgt" / "abnormal.json"
    written = episodes.stat().st_mtime_ns
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    assert not any(line.startswith("warning") for line in lines), lines
    assert sum("reusing finished evaluation" in line for line in lines) == 2
    assert episodes.stat().st_mtime_ns == written  # compared, not rewritten
    assert scores(result) == scores(reference)


# -- 2. finished evaluation records --------------------------------------------------------------------------
def _drop_method(saved: dict) -> None:
    saved["records"] = []


def _edit_auroc(saved: dict) -> None:
    saved["records"][0]["auroc"] = 1.0


def _drop_episode(saved: dict) -> None:
    saved["records"].pop()


def _rename_method(saved: dict) -> None:
    for r in saved["records"]:
        r["method"] = "scratch"


@pytest.mark.parametrize(
    ("edit", "new_digest"),
    [
        (_drop_method, False),
        (_edit_auroc, False),
        (_drop_episode, False),
        (_rename_method, False),
        # a careful editor recomputes the digest: the records themselves are checked as well
        (_drop_method, True),
        (_drop_episode, True),
        (_rename_method, True),
    ],
)
def test_edited_evaluation_records_are_not_reused(
    data_root: Path, tmp_path: Path, reference, edit, new_digest: bool
) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    run_protocol(config, progress=False, log=None)
    done = tmp_path / "out" / "evaluations" / "tgt" / "mm-PT.json"
    saved = json.loads(done.read_text())
    edit(saved)
    if new_digest:
        from torchcross.protocol import run

        saved = run._with_digest({k: v for k, v in saved.items() if k != "digest"})
    done.write_text(json.dumps(saved))
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    assert any("warning" in line and "mm-PT.json" in line and "evaluating again" in line for line in lines)
    assert scores(result) == scores(reference)
    assert sorted(set(result.summary["method"])) == ["mm-PT", "scratch"]


def test_an_edited_partial_evaluation_is_redone(data_root: Path, tmp_path: Path, reference) -> None:
    config = tiny_config(data_root, tmp_path / "out")
    run_protocol(config, progress=False, log=None)
    done = tmp_path / "out" / "evaluations" / "tgt" / "mm-PT.json"
    saved = json.loads(done.read_text())
    records = saved["records"]
    records[0]["auroc"] = 1.0
    done.unlink()
    partial = done.with_name("mm-PT.partial.json")
    partial.write_text(json.dumps({"fingerprint": saved["fingerprint"], "tasks": {"abnormal": records}}))
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    assert any("warning" in line and "mm-PT.partial.json" in line for line in lines)
    assert scores(result) == scores(reference)


# -- 3. checkpoints ------------------------------------------------------------------------------------------
def _train(ckpt: Path, steps: int = 2) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))

    def step(_unit):
        loss = (model(x) ** 2).mean()
        loss.backward()
        return loss

    return train_steps(model, opt, step, lambda: iter(range(steps)), steps, checkpoint=ckpt, progress=False)


def test_a_flipped_byte_in_a_checkpoints_tensors_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    _train(ckpt)
    state = torch.load(ckpt, weights_only=True)
    payload = state["model"]["weight"].numpy().tobytes()
    raw = bytearray(ckpt.read_bytes())
    at = raw.find(payload)
    assert raw.count(payload) == 1
    raw[at + 1] ^= 0x01  # a low mantissa bit of the first weight: still a finite float, loads fine
    ckpt.write_bytes(bytes(raw))
    assert not torch.equal(torch.load(ckpt, weights_only=True)["model"]["weight"], state["model"]["weight"])
    with pytest.raises(
        CheckpointError, match=r"c\.pt.*does not match the checksum.*delete it.*resume = false"
    ):
        _train(ckpt, steps=4)


def test_a_checkpoint_without_a_checksum_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    _train(ckpt)
    state = torch.load(ckpt, weights_only=True)
    del state["checksum"]
    torch.save({**state, "version": 2}, ckpt)  # as an older torchcross wrote it
    with pytest.raises(CheckpointError, match=r"c\.pt.*format version 2, without a checksum.*delete it"):
        _train(ckpt, steps=4)
    torch.save({**state, "version": training._VERSION}, ckpt)  # the checksum taken out
    with pytest.raises(CheckpointError, match=r"c\.pt.*does not match the checksum.*resume = false"):
        _train(ckpt, steps=4)


# -- 4. FIFOs and other special files ------------------------------------------------------------------------
READERS = {
    "episode set": EpisodeSet.load,
    "results csv": ResultsTable.read_csv,
    "results json": ResultsTable.read_json,
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_readers_refuse_special_files_without_blocking(tmp_path: Path, reader: str, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "results.x"
        os.mkfifo(path)
        why = "a FIFO"
    elif kind == "device":
        path = Path(os.devnull)
        why = "a character device"
    else:
        path = tmp_path
        why = "a directory"
    with no_hang(5), pytest.raises(ValueError, match=rf"{str(path)!r} is {why}.*not a regular file"):
        READERS[reader](path)


# -- 5. damaged curve CSVs and results files -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"step,loss\n1,0.5\n\xff\xfe,0.4\n", "is not UTF-8 text"),
        (b"step,loss\n1,0.5\nx,0.4\n", "line 3: the step 'x' is not a whole number"),
    ],
)
def test_a_damaged_curve_csv_is_named_with_the_fix(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "mm-PT.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"mm-PT\.csv.*{match}.*delete it or move it away"):
        CSVLogger(path).log_metrics(3, {"loss": 0.3})  # a resumed run opens the curve and logs


def test_a_damaged_curve_stops_the_protocol_naming_it(data_root: Path, tmp_path: Path) -> None:
    config = tiny_config(data_root, tmp_path / "out", evaluation={"methods": ["mm-PT"]})
    run_protocol(config, progress=False, log=None)
    curve = tmp_path / "out" / "curves" / "tgt" / "mm-PT.csv"
    curve.write_bytes(b"step,loss\n1,\xff\n")
    (tmp_path / "out" / "evaluations" / "tgt" / "mm-PT.json").unlink()
    with pytest.raises(ValueError, match=r"mm-PT\.csv' is not UTF-8 text.*delete it or move it away"):
        run_protocol(config, progress=False, log=None)


def test_damaged_results_files_are_named(tmp_path: Path) -> None:
    table = ResultsTable([{"method": "a", "auroc": 0.5}, {"method": "b", "auroc": 0.75}])
    path = tmp_path / "results.json"
    table.to_json(path)
    path.write_text(path.read_text()[:-20])  # cut short
    with pytest.raises(ValueError, match=r"results\.json' is not valid JSON.*cut short or damaged"):
        ResultsTable.read_json(path)
    path.write_bytes(b"[\xff]")
    with pytest.raises(ValueError, match=r"results\.json' is not UTF-8 text"):
        ResultsTable.read_json(path)
    csv_path = tmp_path / "results.csv"
    csv_path.write_bytes(b"method,auroc\na,\xff\n")
    with pytest.raises(ValueError, match=r"results\.csv' is not UTF-8 text"):
        ResultsTable.read_csv(csv_path)
    csv_path.write_text("method,auroc\na,0.5,extra\n")
    with pytest.raises(ValueError, match=r"results\.csv', line 2: 3 cells, but the header has 2"):
        ResultsTable.read_csv(csv_path)
