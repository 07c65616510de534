"""Where a resumable stream stands: one object in the main process, counted where items are consumed.

A stream's item ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``; what changes while
a loop runs (the epoch, the item where iteration started, the items the loop took) lives in one
`StreamPosition`, held by the stream in the main process and advanced by whoever hands the
items to the loop (the stream's own ``__iter__`` without workers,
[`StreamLoader`][torchcross.data.stream.StreamLoader] with them). DataLoader workers never own
it: they receive the indices of their items, or a plain copy taken when their iterator starts.
"""

from __future__ import annotations

from torchcross._checks import check_int

__all__ = ["StreamPosition"]


class StreamPosition:
    """A stream's epoch, the global item its iteration starts at, and the items this rank consumed since.

    ``start`` is global (over all ranks): after a rank of ``W`` consumed ``n`` items the next
    iteration starts at ``start + n * W`` (`resume_point()`).

    Examples:
        >>> position = StreamPosition()
        >>> position.consumed += 3  # the loop took three items
        >>> position.resume_point(ranks=2)
        6
        >>> position.set_epoch(1)  # a new epoch starts from its first item
        >>> position.epoch, position.start, position.consumed
        (1, 0, 0)
    """

    __slots__ = ("consumed", "epoch", "start")

    def __init__(self, epoch: int = 0, start: int = 0) -> None:
        self.epoch = check_int(epoch, "epoch", 0)
        self.start = check_int(start, "start", 0)
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``; another epoch than the current one starts from its first item."""
        epoch = check_int(epoch, "epoch", 0)
        if epoch != self.epoch:
            self.epoch, self.start, self.consumed = epoch, 0, 0

    def resume_point(self, ranks: int = 1) -> int:
        """The global item where an iteration resumed now would start."""
        return self.start + self.consumed * ranks

    def restore(self, epoch: int, start: int) -> None:
        """Continue ``epoch`` from global item ``start`` (nothing consumed yet)."""
        self.epoch, self.start, self.consumed = epoch, start, 0

    def __getstate__(self) -> tuple[int, int, int]:
        return self.epoch, self.start, self.consumed

    def __setstate__(self, state: tuple[int, int, int]) -> None:
        self.epoch, self.start, self.consumed = state

    def __repr__(self) -> str:
        return f"StreamPosition(epoch={self.epoch}, start={self.start}, consumed={self.consumed})"
