"""Source training for the protocol, with checkpoints: a run can stop and resume where it was.

`train_steps()` runs ``steps`` optimiser updates of any step function over an
iterator of training units (mm-PT batches, mm-MAML meta-batches). Every
``checkpoint_every`` steps (and at the end) it saves, atomically, the model and
optimiser state, the position of the (seeded, resumable) sampler, the torch RNG state
and the losses so far. Started again with the same checkpoint file it continues from
the saved step and produces the same weights as an uninterrupted run.

The loop is plain; what it saves is a `Checkpointer` composing the ``state_dict`` of each part
(`Stateful`: the model, the optimiser, the resumable stream, whose position counts what the loop
takes, torch's RNG (`TorchRNG`), the `LossCurve` and early stopping), so a new piece of state is one
more part.
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
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from torchcross._io import atomic_write
from torchcross.distributed.seeds import derived_seed, rank_and_world_size
from torchcross.evaluation.loggers import MetricsLogger
from torchcross.learners.divergence import DIVERGENCE, DivergenceRule
from torchcross.protocol.ranks import Team, mean_over_ranks

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "CheckpointMismatchError",
    "DivergedLossError",
    "LossCurve",
    "NonFiniteLossError",
    "Stateful",
    "TorchRNG",
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
    ([`DivergenceRule`][DivergenceRule]); the message names the step,
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


@runtime_checkable
class Stateful(Protocol):
    """What a `Checkpointer` composes: an object whose state is a ``state_dict`` (a model, an optimiser)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class TorchRNG:
    """torch's global CPU RNG as a `Stateful` part of a checkpoint.

    Examples:
        >>> rng = TorchRNG()
        >>> state = rng.state_dict()
        >>> a = torch.rand(1)
        >>> rng.load_state_dict(state)
        >>> bool(torch.rand(1) == a)
        True
    """

    def state_dict(self) -> torch.Tensor:
        return torch.get_rng_state()

    def load_state_dict(self, state: torch.Tensor) -> None:
        torch.set_rng_state(state)


class LossCurve:
    """The loss of every step so far, a `Stateful` part of a checkpoint (its state is the list itself)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def state_dict(self) -> list[float]:
        return self.values

    def load_state_dict(self, state: list[float]) -> None:
        self.values = list(state)


class Checkpointer:
    """Saves a training's state, composed of its parts' ``state_dict``s, and resumes from it.

    A checkpoint holds ``format``, ``version``, ``fingerprint``, ``settings`` and ``step``, then
    ``{name: part.state_dict()}`` in the order of ``parts`` (``None`` for a part that is ``None``),
    under a checksum (`save_checkpoint()`); `resume()` restores them in the same order. Under a
    process group of several ranks (``torchrun``) each rank keeps its previous checkpoint beside
    its own (`previous_checkpoint()`) and the ranks agree on the newest step all of them saved.

    Args:
        path: the checkpoint file (``None``: no checkpoints; `resume()` starts at step 0).
        parts: what the checkpoint composes, by name (`Stateful` objects or ``None``).
        fingerprint: what the checkpoint must match to be resumed (see `config_fingerprint()`).
        settings: the settings behind it as JSON text (a refused resume names what changed).
        resume: resume from ``path`` if it exists (else start over and overwrite it).
        description: the training's name in messages.
        log: receives the resume messages.
        guard: a context manager around every save (`train_steps()` holds Ctrl-C back in it).

    Examples:
        >>> import tempfile
        >>> def parts(model, curve):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ...     return {"model": model, "optimizer": opt, "torch_rng": TorchRNG(), "losses": curve}
        >>> model, curve, path = nn.Linear(1, 1), LossCurve(), f"{tempfile.mkdtemp()}/a.pt"
        >>> curve.values.append(0.5)
        >>> Checkpointer(path, parts(model, curve), fingerprint="x").save(1)
        >>> other, curve2 = nn.Linear(1, 1), LossCurve()
        >>> Checkpointer(path, parts(other, curve2), fingerprint="x").resume(5)
        1
        >>> torch.equal(other.weight, model.weight), curve2.values
        (True, [0.5])
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        parts: Mapping[str, Stateful | None],
        *,
        fingerprint: str = "",
        settings: str = "",
        resume: bool = True,
        description: str = "train",
        log: Callable[[str], None] | None = None,
        guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.parts = dict(parts)
        self.fingerprint = fingerprint
        self.settings = settings
        self.allow_resume = resume
        self.description = description
        self.log = log
        self.guard = guard
        _, world = rank_and_world_size()
        # under torchrun each rank keeps its previous checkpoint: a rank that dies while saving
        # leaves the others one save ahead, and all resume from the newest step every rank saved
        self.previous = previous_checkpoint(self.path) if self.path is not None and world > 1 else None
        self.saved_step = 0  # a rerun resumes from the last checkpoint saved (0: starts over)
        self._path_is_ours = False  # whether ``path`` holds this run's checkpoint (a save moves it)

    def _read(self, file: Path | None, steps: int, newer: int | None) -> dict[str, Any] | None:
        if file is None or not self.allow_resume or not (file.exists() or file.is_symlink()):
            return None
        if file != self.previous:
            return load_checkpoint(file, self.fingerprint, self.settings)
        try:
            state = load_checkpoint(file, self.fingerprint, self.settings)
        except CheckpointMismatchError:
            return None  # another run's: the next save replaces it
        useful = int(state["step"]) <= steps and (newer is None or int(state["step"]) < newer)
        return state if useful else None

    def _candidates(self, steps: int) -> dict[int, tuple[Path, dict[str, Any]]]:
        """The checkpoints this rank can resume from, by step."""
        out: dict[int, tuple[Path, dict[str, Any]]] = {}
        current = self._read(self.path, steps, None)
        if self.path is not None and current is not None:
            if int(current["step"]) > steps:
                raise CheckpointMismatchError(
                    f"checkpoint {self.path} is at step {current['step']}, beyond the {steps} steps asked "
                    "for; ask for at least as many steps, use a new out_dir, or set [run] resume = false"
                )
            out[int(current["step"])] = (self.path, current)
        older = self._read(self.previous, steps, None if current is None else int(current["step"]))
        if self.previous is not None and older is not None:
            out[int(older["step"])] = (self.previous, older)
        return out

    def _restore(self, file: Path, state: dict[str, Any], steps: int, newest: int) -> None:
        start = int(state["step"])
        try:
            for name, part in self.parts.items():
                if part is not None and state.get(name) is not None:
                    part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(file, f"does not fit this model ({str(exc).splitlines()[0][:200]})") from None
        if self.log is not None and start < steps:
            why = f"; the newest step every rank saved (this rank also saved step {newest})"
            self.log(
                f"resuming {self.description} from step {start} of {steps} ({file})"
                + (why if newest > start else "")
            )

    def resume(self, steps: int) -> int:
        """Restore every part from the newest checkpoint all ranks can resume; returns its step (0: none).

        Raises:
            CheckpointMismatchError: the checkpoint was written with other settings, or is beyond ``steps``.
            CheckpointError: the checkpoint (or, under ``torchrun``, its previous copy) is damaged or
                not a torchcross checkpoint (on any rank: every rank raises).
        """
        try:
            states = self._candidates(steps)
        except CheckpointError as exc:
            _agree_on_start([0], exc, self.description)  # the other ranks raise too
            raise
        start = _agree_on_start([0, *states], None, self.description)
        if start > 0:
            try:
                self._restore(*states[start], steps, max(states))
            except CheckpointError as exc:
                _agree_on_start([start], exc, self.description)
                raise
            _agree_on_start([start], None, self.description)  # every rank restored its state
            self._path_is_ours = states[start][0] == self.path
        elif states and self.log is not None:
            self.log(
                f"starting {self.description} from step 0, the newest step every rank saved "
                f"(this rank saved step {max(states)})"
            )
        self.saved_step = start
        return start

    def state_dict(self, step: int) -> dict[str, Any]:
        """The checkpoint's content at ``step``: the header, then every part's ``state_dict``."""
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "step": step,
        }
        return {**header, **{k: None if p is None else p.state_dict() for k, p in self.parts.items()}}

    def save(self, step: int) -> None:
        """Save every part at ``step`` atomically (under ``torchrun`` the last one becomes the previous)."""
        if self.path is None:
            return
        with self.guard():
            if self.previous is not None and self._path_is_ours and self.path.is_file():
                os.replace(self.path, self.previous)
            save_checkpoint(self.path, self.state_dict(step))
            self.saved_step, self._path_is_ours = step, True


def _checked_loss(
    value: float | torch.Tensor,
    losses: list[float],
    divergence: DivergenceRule | None,
    description: str,
    at: str,
    unit: Any,
) -> float:
    """A step's loss as a float averaged over the ranks, refused if not finite or diverged (``at``: where)."""
    loss = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    loss = mean_over_ranks(loss)  # under torchrun: every rank logs and checks the same loss
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"{description}: the loss is {loss} at {at} (task {_unit_name(unit)}); "
            "training diverged or the data hold NaN/inf: lower the learning rate or check the data "
            "(the last checkpoint is kept)"
        )
    first = losses[0] if losses else loss
    if divergence is not None and divergence.diverged(loss, first):
        raise DivergedLossError(
            f"{description}: the loss is {loss:.4g} at {at} "
            f"(task {_unit_name(unit)}), above {divergence.limit(first):.4g} = "
            f"{divergence.describe()} with a first loss of {first:.4g}: training diverged; lower "
            "the learning rate (for MAML also [maml] inner_lr) (the step is not applied; the last "
            "checkpoint is kept)"
        )
    return loss


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
            ([`DivergenceRule`][DivergenceRule]; default: above
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

    settings_text = ""
    if settings is not None:
        settings_text = json.dumps(settings, sort_keys=True, default=str)
        fingerprint = fingerprint or config_fingerprint(settings)
    curve, ctrl_c = LossCurve(), _CtrlC()
    parts: dict[str, Stateful | None] = {
        "model": model,
        "optimizer": optimizer,
        "sampler": sampler,  # counts the units the loop takes (StreamPosition in the main process)
        "torch_rng": TorchRNG(),
    }
    checkpointer = Checkpointer(
        checkpoint,
        {**parts, "losses": curve, "early_stopping": early_stopping},
        fingerprint=fingerprint,
        settings=settings_text,
        resume=resume,
        description=description,
        log=log,
        guard=ctrl_c.saving_block,  # a Ctrl-C while saving lands after the step is recorded
    )
    start = checkpointer.resume(steps)
    rank, world = rank_and_world_size()
    if start == 0 and world > 1:  # each rank its own augmentation draws, a function of (seed, rank)
        torch.manual_seed(derived_seed(torch.initial_seed(), rank))
    losses = curve.values
    if start < steps and not (early_stopping is not None and early_stopping.stopped):
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
                at = f"step {step + 1} of {steps}"
                loss = _checked_loss(step_fn(unit), losses, divergence, description, at, unit)
                optimizer.step()
                losses.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                done = step + 1
                if logger is not None:
                    logger.log_metrics(done, {"loss": loss})
                if (
                    early_stopping is not None
                    and early_stopping.due(done)
                    and early_stopping.check(done, model)
                ):
                    checkpointer.save(done)
                    break
                if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                    checkpointer.save(done)
            else:
                checkpointer.save(steps)
        except KeyboardInterrupt as exc:
            resume_step = checkpointer.saved_step if checkpoint is not None else None
            raise TrainingInterrupted(description, resume_step) from exc
        finally:
            ctrl_c.restore()
            bar.close()
    if early_stopping is not None:
        early_stopping.restore_best(model)
    return losses
