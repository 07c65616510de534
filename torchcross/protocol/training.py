"""Source training for the protocol, with checkpoints: a run can stop and resume where it was.

:func:`train_steps` runs ``steps`` optimiser updates of any step function over an
iterator of training units (mm-PT batches, mm-MAML meta-batches). Every
``checkpoint_every`` steps (and at the end) it saves, atomically, the model and
optimiser state, the position of the (seeded, resumable) sampler, the torch RNG state
and the losses so far. Started again with the same checkpoint file it continues from
the saved step and produces the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CheckpointMismatchError", "config_fingerprint", "train_steps"]

_FORMAT = "torchcross-protocol-checkpoint"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with other settings."""


def config_fingerprint(settings: Any) -> str:
    """A short hash of JSON-serialisable settings (what a checkpoint must match to be resumed).

    Examples:
        >>> config_fingerprint({"a": 1}) == config_fingerprint({"a": 1}), len(config_fingerprint([1]))
        (True, 16)
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` next to ``path``, then rename: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a torchcross protocol checkpoint; delete it or move it away"
        )
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written with other settings (fingerprint {state.get('fingerprint')}, "
            f"now {fingerprint}); use a new out_dir, delete the checkpoint, or set [run] resume = false"
        )
    return state


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[Any], float],
    units: Callable[[], Iterable[Any]],
    steps: int,
    *,
    sampler: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    fingerprint: str = "",
    resume: bool = True,
    progress: bool | None = None,
    description: str = "train",
    early_stopping: Any = None,
) -> list[float]:
    """Run ``steps`` updates ``optimizer.zero_grad(); loss = step_fn(unit); optimizer.step()``.

    Args:
        model: whose ``state_dict`` is checkpointed (all trained parameters must be in it).
        optimizer: updates the parameters; its state is checkpointed.
        step_fn: computes the loss of one unit and accumulates gradients; returns the loss.
        units: returns a fresh iterator over training units (called after restoring state).
        steps: total number of updates.
        sampler: an object with ``state_dict(consumed=...)`` and ``load_state_dict`` (the
            multi-task samplers), checkpointed so a resumed run continues its stream.
        checkpoint: file to save to and resume from (``None``: no checkpoints).
        checkpoint_every: save every this many steps (0: only at the end).
        fingerprint: settings the checkpoint must match (see :func:`config_fingerprint`);
            leave the step count out of it, so a finished run can be extended.
        resume: continue from ``checkpoint`` if it exists (else start over and overwrite it).
        progress: tqdm progress bar; ``None`` shows it only on a terminal.
        description: progress bar label.
        early_stopping: a :class:`~torchcross.protocol.validation.EarlyStopping`:
            validate when due, stop when it says so, and end with its best weights in
            ``model``; its state is checkpointed (a resumed run that had stopped trains
            no further).

    Returns:
        the loss of every step (including those of a resumed earlier run).

    Raises:
        CheckpointMismatchError: the checkpoint was written with other settings.
        ValueError: the units ran out before ``steps`` updates.

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
    losses: list[float] = []
    start = 0
    state = _load(path, fingerprint) if (path is not None and resume) else None
    if state is not None:
        if int(state["step"]) > steps:
            raise CheckpointMismatchError(
                f"checkpoint {path} is at step {state['step']}, beyond the {steps} steps asked for; "
                "ask for at least as many steps, use a new out_dir, or set [run] resume = false"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if sampler is not None and state.get("sampler") is not None:
            sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        start, losses = int(state["step"]), list(state["losses"])
        if early_stopping is not None and state.get("early_stopping") is not None:
            early_stopping.load_state_dict(state["early_stopping"])

    def save(step: int) -> None:
        if path is None:
            return
        sampler_state = None
        if sampler is not None:
            sampler_state = sampler.state_dict(consumed=step - start)
        _save(
            path,
            {
                "format": _FORMAT,
                "fingerprint": fingerprint,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "sampler": sampler_state,
                "torch_rng": torch.get_rng_state(),
                "losses": losses,
                "early_stopping": None if early_stopping is None else early_stopping.state_dict(),
            },
        )

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
        model.train()
        for step in range(start, steps):
            try:
                unit = next(iterator)
            except StopIteration:
                raise ValueError(
                    f"{description}: the training data ran out after {step} of {steps} steps"
                ) from None
            optimizer.zero_grad(set_to_none=True)
            value = step_fn(unit)
            loss = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            optimizer.step()
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            done = step + 1
            if early_stopping is not None and early_stopping.due(done) and early_stopping.check(done, model):
                save(done)
                break
            if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                save(done)
        else:
            save(steps)
    finally:
        bar.close()
    if early_stopping is not None:
        early_stopping.restore_best(model)
    return losses
