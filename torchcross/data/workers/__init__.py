"""Plumbing for DataLoader workers and distributed ranks.

* `sharding`: which share of the work this worker and
  rank do;
* `shared_ints`: epochs and resume positions that
  persistent workers see change;
* `shm_pool`: reused shared-memory blocks for the
  images and episodes torchcross's own readers and datasets send out of a worker.
"""

__all__: list[str] = []
