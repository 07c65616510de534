"""Plumbing for DataLoader workers and distributed ranks.

* `sharding`: which share of the work this worker and
  rank do;
* `position`: where a resumable stream stands (its epoch and the items consumed), one object
  in the main process;
* `shm_pool`: reused shared-memory blocks for the
  images and episodes torchcross's own readers and datasets send out of a worker.
"""

__all__: list[str] = []
