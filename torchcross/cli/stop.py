"""What the command prints when Ctrl-C stops it."""

from __future__ import annotations

__all__ = ["stopped_message"]


def stopped_message(prog: str, exc: KeyboardInterrupt, rerun: str | None = "the same command") -> str:
    """The one line printed on Ctrl-C (exit status 130), saying how to resume (``rerun=None``: not resumable).

    A ``TrainingInterrupted`` adds what was training
    and the step its last checkpoint holds.

    Examples:
        >>> stopped_message("torchcross run", KeyboardInterrupt())
        'torchcross run: stopped; rerun the same command to resume'
    """
    if rerun is None:
        return f"{prog}: stopped"
    step = getattr(exc, "resume_step", None)
    if step is None:
        return f"{prog}: stopped; rerun {rerun} to resume"
    what = getattr(exc, "description", "training")
    return f"{prog}: stopped; rerun {rerun} to resume {what} from step {step}"
