"""Source training for the protocol, with checkpoints: a run can stop and resume where it was.

`train_steps()` runs ``steps`` optimiser updates of any step function over an
iterator of training units (mm-PT batches, mm-MAML meta-batches). Every
``checkpoint_every`` steps (and at the end) it saves, atomically, the model and
optimiser state, the position of the (seeded, resumable) sampler, the torch RNG state
and the losses so far. Started again with the same checkpoint file it continues from
the saved step and produces the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross._io import atomic_write
from torchcross.distributed.seeds import derived_seed, rank_and_world_size
from torchcross.evaluation.loggers import MetricsLogger
from torchcross.learners.divergence import DIVERGENCE, DivergenceRule
from torchcross.protocol.ranks import Team, mean_over_ranks

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "DivergedLossError",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "checkpoint_checksum",
    "config_fingerprint",
    "load_checkpoint",
    "previous_checkpoint",
    "save_checkpoint",
    "train_steps",
]

_FORMAT = "torchcross-protocol-checkpoint"
_VERSION = 3  # 3: with a checksum of the content (version 2 had none and is refused)
_WHAT_TO_DO = "delete it (training starts again from step 0) or set [run] resume = false"


class CheckpointError(ValueError):
    """A checkpoint file is damaged, foreign or unusable (the message names it and what to do)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint was written by a run with other settings."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``train_steps``, with where a rerun resumes.

    Attributes:
        description: what was training (e.g. ``"mm-PT on glaucoma"``).
        resume_step: the step of the last checkpoint saved, where a rerun continues
            (0: no checkpoint yet), or ``None`` without a checkpoint file.
    """

    def __init__(self, description: str, resume_step: int | None) -> None:
        where = f" from step {resume_step}" if resume_step is not None else ""
        super().__init__(f"{description} stopped; a rerun resumes{where}")
        self.description = description
        self.resume_step = resume_step


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss (the message names the step and the task)."""


class DivergedLossError(NonFiniteLossError):
    """Training diverged to a finite but absurd loss: above ``min(1e6, 1000 x max(|first loss|, 1))``
    ([`DivergenceRule`][torchcross.learners.divergence.DivergenceRule]); the message names the step,
    the task, the loss and the first loss. A ``NonFiniteLossError``, so one ``except`` catches both."""


class _CtrlC:
    """Ctrl-C during training, made robust: remembered, raised between steps, held back during saves.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, and an
    exception raised inside a finaliser or ``__del__`` is printed and dropped, so a plain
    Ctrl-C can be lost. While active (main thread, Python's default handler in place), this
    handler records every SIGINT; it raises at once outside a checkpoint save, and
    `check()` raises again at the next step boundary if that exception was swallowed.
    During a save it only records, and the save's end raises. Signals are never blocked:
    a blocked SIGINT goes to another thread of the process, where CPython may notice it late.
    """

    def __init__(self) -> None:
        self.requested = False
        self.saving = False
        self.previous: Any = None
        self.active = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.saving:
            raise KeyboardInterrupt

    def install(self) -> None:
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._handler)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    @contextmanager
    def saving_block(self) -> Iterator[None]:
        """A Ctrl-C in the block lands after it (the step is then recorded as saved)."""
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        self.check()


def config_fingerprint(settings: Any) -> str:
    """A short hash of JSON-serialisable settings (what a checkpoint must match to be resumed).

    Examples:
        >>> config_fingerprint({"a": 1}) == config_fingerprint({"a": 1}), len(config_fingerprint([1]))
        (True, 16)
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _changed(saved: str, now: str) -> str:
    """``"; changed: key (saved a, now b), ..."`` from two JSON settings texts (empty if unknown)."""
    try:
        old, new = _flatten(json.loads(saved)), _flatten(json.loads(now))
    except (TypeError, ValueError):
        return ""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not keys:
        return ""
    return "; changed: " + ", ".join(f"{k} (saved {old.get(k)!r}, now {new.get(k)!r})" for k in keys)


def _update_digest(digest: Any, value: Any) -> None:
    """Feed ``value`` (nested dicts, lists, tuples of tensors and plain values) to a hash, in order."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}|".encode())
        for k, v in value.items():
            _update_digest(digest, k)
            _update_digest(digest, v)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}|".encode())
        for v in value:
            _update_digest(digest, v)
    else:  # plain values; repr is exact for floats
        digest.update(f"{type(value).__name__}:{value!r}|".encode())


def checkpoint_checksum(state: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of a checkpoint's content: every field but ``"checksum"``, tensors' bytes included.

    Examples:
        >>> a = checkpoint_checksum({"w": torch.zeros(2), "step": 1})
        >>> a == checkpoint_checksum({"w": torch.zeros(2), "step": 1, "checksum": "x"})
        True
        >>> a == checkpoint_checksum({"w": torch.tensor([0.0, 1e-45]), "step": 1})
        False
    """
    digest = hashlib.sha256()
    _update_digest(digest, {k: v for k, v in state.items() if k != "checksum"})
    return "sha256:" + digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write a checkpoint (tensors and plain values only) atomically.

    The checkpoint stores `checkpoint_checksum()` of its content under ``"checksum"``;
    `load_checkpoint()` refuses a file whose content no longer matches it.

    Raises:
        OSError: the checkpoint cannot be written, naming it, the folder in the way and
            what to do (the previous checkpoint, if any, is unchanged).
    """
    import io

    state = dict(state)
    state["checksum"] = checkpoint_checksum(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError as exc:
        raise OSError(
            exc.errno, f"checkpoint not saved: {exc.strerror} (in a protocol run: another [run] out_dir)"
        ) from exc


def _damaged(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {str(path)!r} {problem}; {_WHAT_TO_DO}")


def load_checkpoint(path: str | os.PathLike[str], fingerprint: str, settings: str = "") -> dict[str, Any]:
    """Read a checkpoint written by `train_steps()` without running any code from it.

    The file is read with ``torch.load(..., weights_only=True)`` (tensors and plain
    values only); its format, fields, checksum (`checkpoint_checksum()`, over every
    tensor's bytes) and fingerprint are checked before anything is used. Checkpoints of
    format version 2 (older torchcross, no checksum) are refused.

    Raises:
        CheckpointError: a damaged, foreign or malformed file (naming it and what to do).
        CheckpointMismatchError: a checkpoint of a run with other settings (naming the
            settings that changed when both runs recorded them).
    """
    path = Path(path)
    if not path.is_file():
        raise _damaged(path, "is not a regular file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; the error below says more
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = re.search(
            r"WeightsUnpickler error:\s*(\S[^\n]*?)(?: was not an allowed global|\.?\n|$)", str(exc)
        )
        found = f": {detail.group(1)[:120]}" if detail else ""
        raise _damaged(
            path, f"holds objects other than tensors and plain values{found}, so it is not loaded"
        ) from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
    ) as exc:
        raise _damaged(
            path, f"is damaged or not a torch file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a torchcross protocol checkpoint; {_WHAT_TO_DO}")
    if state.get("version") == 2:
        raise _damaged(
            path,
            "was written by an older torchcross (format version 2, without a checksum), so its content "
            "cannot be checked",
        )
    if state.get("version") != _VERSION:
        raise _damaged(path, f"has format version {state.get('version')!r}, this torchcross reads {_VERSION}")
    try:
        actual = checkpoint_checksum(state)
    except (RuntimeError, TypeError, ValueError) as exc:  # e.g. tensors of a kind torchcross never writes
        actual = f"unreadable ({type(exc).__name__})"
    if state.get("checksum") != actual:
        raise _damaged(
            path,
            f"is damaged: its content does not match the checksum written with it "
            f"(stored {str(state.get('checksum'))[:80]!r}); a byte changed on disk or the file was edited",
        )
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written with other settings (fingerprint {state.get('fingerprint')}, "
            f"now {fingerprint}{_changed(str(state.get('settings', '')), settings)}); use a new out_dir, "
            "delete the checkpoint, or set [run] resume = false"
        )
    step, losses = state.get("step"), state.get("losses")
    if (
        isinstance(step, bool)
        or not isinstance(step, int)
        or step < 0
        or not isinstance(losses, list)
        or len(losses) != step
        or not all(isinstance(v, float) for v in losses)
        or not isinstance(state.get("model"), dict)
        or not isinstance(state.get("optimizer"), dict)
        or not isinstance(state.get("torch_rng"), torch.Tensor)
        or state["torch_rng"].dtype != torch.uint8
    ):
        raise _damaged(path, "is malformed (step, losses, model, optimizer or RNG state missing or wrong)")
    return state


def previous_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Where `train_steps()` keeps a rank's previous checkpoint under ``torchrun``.

    Examples:
        >>> previous_checkpoint("checkpoints/rank-1/mm-PT.pt").name
        'mm-PT.previous.pt'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def _agree_on_start(steps: list[int], error: CheckpointError | None, description: str) -> int:
    """The newest step every rank can resume from (``steps``: this rank's, 0 = start over).

    Under ``torchrun`` the ranks share their steps; if one cannot resume (``error``),
    every rank raises. A rank that died while saving holds an older checkpoint than the
    others; they all resume from the newest step each of them saved (they keep their
    previous checkpoint for that).
    """
    team = Team(*rank_and_world_size())
    if team.world_size == 1:
        return max(steps)
    outcomes = team.gather((sorted(set(steps)), None if error is None else str(error)))
    if error is not None:
        return 0  # the caller raises its own error
    failed = [(r, e) for r, (_, e) in enumerate(outcomes) if e is not None]
    if failed:
        raise CheckpointError(f"rank {failed[0][0]} cannot resume {description}: {failed[0][1]}")
    common = set.intersection(*(set(s) for s, _ in outcomes))
    return max(common | {0})


def _unit_name(unit: Any) -> str:
    """The task identifiers found in a training unit (a batch with its description, or tasks)."""
    names: list[str] = []

    def visit(obj: Any, depth: int) -> None:
        ident = getattr(obj, "task_identifier", None)
        if isinstance(ident, str):
            names.append(ident or "<unnamed task>")
        elif hasattr(obj, "description") and hasattr(obj, "support"):
            visit(obj.description, depth)
        elif isinstance(obj, (list, tuple)) and depth < 2:
            for o in obj:
                visit(o, depth + 1)

    visit(unit, 0)
    return ", ".join(dict.fromkeys(names)) or "unknown"


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[Any], float | torch.Tensor],
    units: Callable[[], Iterable[Any]],
    steps: int,
    *,
    sampler: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    fingerprint: str = "",
    settings: Mapping[str, Any] | None = None,
    resume: bool = True,
    progress: bool | None = None,
    description: str = "train",
    logger: MetricsLogger | None = None,
    log: Callable[[str], None] | None = None,
    early_stopping: Any = None,
    divergence: DivergenceRule | None = DIVERGENCE,
) -> list[float]:
    """Run ``steps`` updates ``optimizer.zero_grad(); loss = step_fn(unit); optimizer.step()``.

    Under a process group of several ranks (``torchrun``) every rank calls it with its own checkpoint file and
    keeps its previous checkpoint beside it (`previous_checkpoint()`): a rank that died while saving is one
    checkpoint behind the others, and every rank resumes from the newest step all ranks saved (step 0 if one
    saved none). The loss returned, logged and checked for NaN is the mean over the ranks (one small
    collective call per step). ``step_fn`` must average the gradients itself (the learners' own
    ``meta_backward``, or [`all_reduce_gradients()`][torchcross.distributed.gradients.all_reduce_gradients]).
    A fresh start reseeds torch's global RNG with a function of its seed and the rank, so each rank draws its
    own augmentation (and dropout); a resumed rank restores its own RNG state.

    Args:
        model: whose ``state_dict`` is checkpointed (all trained parameters must be in it).
        optimizer: updates the parameters; its state is checkpointed.
        step_fn: computes the loss of one unit and accumulates gradients; returns the loss.
        units: returns a fresh iterator over training units (called after restoring state).
        steps: total number of updates.
        sampler: an object with ``state_dict()`` and ``load_state_dict`` (the multi-task samplers),
            checkpointed so a resumed run continues its stream; ``units`` iterates it so that it counts
            the units taken (the sampler itself, or a
            [`StreamLoader`][torchcross.data.stream.StreamLoader] over it).
        checkpoint: file to save to and resume from (``None``: no checkpoints).
        checkpoint_every: save every this many steps (0: only at the end).
        fingerprint: settings the checkpoint must match (see `config_fingerprint()`);
            leave the step count out of it, so a finished run can be extended.
        settings: the settings themselves (JSON-serialisable), instead of ``fingerprint``:
            the checkpoint records them, so a refused resume names what changed.
        resume: continue from ``checkpoint`` if it exists (else start over and overwrite it and,
            under ``torchrun``, its previous copy).
        progress: tqdm progress bar; ``None`` shows it only on a terminal.
        description: progress bar label (and the name in ``log`` messages).
        logger: a ``MetricsLogger`` receiving
            ``{"loss": ...}`` after every step (step numbers from 1); the caller closes it.
        log: receives ``"resuming <description> from step N"`` when a checkpoint is resumed.
        early_stopping: a [`EarlyStopping`][torchcross.protocol.validation.EarlyStopping]:
            validate when due, stop when it says so, and end with its best weights in
            ``model``; its state is checkpointed (a resumed run that had stopped trains
            no further).
        divergence: when a finite loss counts as diverged
            ([`DivergenceRule`][torchcross.learners.divergence.DivergenceRule]; default: above
            ``min(1e6, 1000 x max(|first loss|, 1))``, the first loss being step 1's, also after a
            resume); ``None`` checks for NaN and inf only.

    Returns:
        the loss of every step (including those of a resumed earlier run).

    Raises:
        CheckpointMismatchError: the checkpoint was written with other settings.
        CheckpointError: the checkpoint (or, under ``torchrun``, its previous copy) is
            damaged or not a torchcross checkpoint (on any rank: every rank raises).
        NonFiniteLossError: a step's loss is NaN or infinite (the step is not applied;
            the last checkpoint stays as it was).
        DivergedLossError: a step's loss is finite but diverged by ``divergence`` (likewise).
        ValueError: the units ran out before ``steps`` updates.
        TrainingInterrupted: on Ctrl-C (a ``KeyboardInterrupt`` naming the step a rerun
            resumes from).

    Examples:
        >>> model = nn.Linear(1, 1, bias=False)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> def step(x):
        ...     loss = ((model(x) - 2 * x) ** 2).mean()
        ...     loss.backward()
        ...     return loss.item()
        >>> losses = train_steps(model, opt, step, lambda: iter([torch.ones(1, 1)] * 50), 50, progress=False)
        >>> round(model.weight.item(), 3), losses[-1] < losses[0]
        (2.0, True)
    """
    from tqdm.auto import tqdm

    path = Path(checkpoint) if checkpoint is not None else None
    settings_text = ""
    if settings is not None:
        settings_text = json.dumps(settings, sort_keys=True, default=str)
        fingerprint = fingerprint or config_fingerprint(settings)

    rank, world = rank_and_world_size()
    # under torchrun each rank keeps its previous checkpoint: a rank that dies while saving
    # leaves the others one save ahead, and all resume from the newest step every rank saved
    previous = previous_checkpoint(path) if path is not None and world > 1 else None

    def read(file: Path | None, newer: int | None) -> dict[str, Any] | None:
        if file is None or not resume or not (file.exists() or file.is_symlink()):
            return None
        if file != previous:
            return load_checkpoint(file, fingerprint, settings_text)
        try:
            state = load_checkpoint(file, fingerprint, settings_text)
        except CheckpointMismatchError:
            return None  # another run's: the next save replaces it
        useful = int(state["step"]) <= steps and (newer is None or int(state["step"]) < newer)
        return state if useful else None

    def candidates() -> dict[int, tuple[Path, dict[str, Any]]]:
        """The checkpoints this rank can resume from, by step."""
        out: dict[int, tuple[Path, dict[str, Any]]] = {}
        current = read(path, None)
        if path is not None and current is not None:
            if int(current["step"]) > steps:
                raise CheckpointMismatchError(
                    f"checkpoint {path} is at step {current['step']}, beyond the {steps} steps asked for; "
                    "ask for at least as many steps, use a new out_dir, or set [run] resume = false"
                )
            out[int(current["step"])] = (path, current)
        older = read(previous, None if current is None else int(current["step"]))
        if previous is not None and older is not None:
            out[int(older["step"])] = (previous, older)
        return out

    def restore(file: Path, state: dict[str, Any], newest: int) -> list[float]:
        start = int(state["step"])
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if sampler is not None and state.get("sampler") is not None:
                sampler.load_state_dict(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(file, f"does not fit this model ({str(exc).splitlines()[0][:200]})") from None
        if early_stopping is not None and state.get("early_stopping") is not None:
            early_stopping.load_state_dict(state["early_stopping"])
        if log is not None and start < steps:
            why = f"; the newest step every rank saved (this rank also saved step {newest})"
            log(
                f"resuming {description} from step {start} of {steps} ({file})"
                + (why if newest > start else "")
            )
        return list(state["losses"])

    try:
        states = candidates()
    except CheckpointError as exc:
        _agree_on_start([0], exc, description)  # the other ranks raise too
        raise
    start = _agree_on_start([0, *states], None, description)
    losses: list[float] = []
    path_is_ours = False  # whether ``path`` holds this run's checkpoint, which a save moves to ``previous``
    if start > 0:
        try:
            losses = restore(*states[start], max(states))
        except CheckpointError as exc:
            _agree_on_start([start], exc, description)
            raise
        _agree_on_start([start], None, description)  # every rank restored its state
        path_is_ours = states[start][0] == path
    elif states and log is not None:
        log(
            f"starting {description} from step 0, the newest step every rank saved "
            f"(this rank saved step {max(states)})"
        )
    del states
    if start == 0 and world > 1:  # each rank its own augmentation draws, a function of (seed, rank)
        torch.manual_seed(derived_seed(torch.initial_seed(), rank))
    saved_step = start  # a rerun resumes from the last checkpoint saved (0: starts over)
    ctrl_c = _CtrlC()

    def save(step: int) -> None:
        nonlocal saved_step, path_is_ours
        if path is None:
            return
        sampler_state = None
        if sampler is not None:
            sampler_state = sampler.state_dict()
        with ctrl_c.saving_block():  # a Ctrl-C while saving lands after the step is recorded
            if previous is not None and path_is_ours and path.is_file():
                os.replace(path, previous)
            save_checkpoint(
                path,
                {
                    "format": _FORMAT,
                    "version": _VERSION,
                    "fingerprint": fingerprint,
                    "settings": settings_text,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "sampler": sampler_state,
                    "torch_rng": torch.get_rng_state(),
                    "losses": losses,
                    "early_stopping": None if early_stopping is None else early_stopping.state_dict(),
                },
            )
            saved_step, path_is_ours = step, True

    stopped = early_stopping is not None and early_stopping.stopped
    if start >= steps or stopped:
        if early_stopping is not None:
            early_stopping.restore_best(model)
        return losses
    iterator = iter(units())
    bar = tqdm(
        total=steps,
        initial=start,
        desc=description,
        unit="step",
        disable=None if progress is None else not progress,
        leave=False,
    )
    try:
        ctrl_c.install()
        model.train()
        for step in range(start, steps):
            ctrl_c.check()
            try:
                unit = next(iterator)
            except StopIteration:
                raise ValueError(
                    f"{description}: the training data ran out after {step} of {steps} steps"
                ) from None
            optimizer.zero_grad(set_to_none=True)
            value = step_fn(unit)
            loss = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            loss = mean_over_ranks(loss)  # under torchrun: every rank logs and checks the same loss
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"{description}: the loss is {loss} at step {step + 1} of {steps} "
                    f"(task {_unit_name(unit)}); "
                    "training diverged or the data hold NaN/inf: lower the learning rate or check the data "
                    "(the last checkpoint is kept)"
                )
            first = losses[0] if losses else loss
            if divergence is not None and divergence.diverged(loss, first):
                raise DivergedLossError(
                    f"{description}: the loss is {loss:.4g} at step {step + 1} of {steps} "
                    f"(task {_unit_name(unit)}), above {divergence.limit(first):.4g} = "
                    f"{divergence.describe()} with a first loss of {first:.4g}: training diverged; lower "
                    "the learning rate (for MAML also [maml] inner_lr) (the step is not applied; the last "
                    "checkpoint is kept)"
                )
            optimizer.step()
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            done = step + 1
            if logger is not None:
                logger.log_metrics(done, {"loss": loss})
            if early_stopping is not None and early_stopping.due(done) and early_stopping.check(done, model):
                save(done)
                break
            if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                save(done)
        else:
            save(steps)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(description, saved_step if path is not None else None) from exc
    finally:
        ctrl_c.restore()
        bar.close()
    if early_stopping is not None:
        early_stopping.restore_best(model)
    return losses
