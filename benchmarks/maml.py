#!/usr/bin/env python
"""MAML meta-steps per second and peak memory: torchcross against its peers, same run, same machine.

Workloads (the standard MAML workloads, see benchmarks/README.md): A (Conv4-64 + BatchNorm, 1x28x28, 5-way 5-shot 15 query,
5 SGD steps lr 0.4, 4 tasks, second order), A-fo (first order), A-nobn (no BatchNorm), B (Conv4-32,
3x84x84, 5-way 1-shot, 2 tasks) and X (A-nobn with a meta-batch of four task kinds: 5-way multi-class,
binary, 3-label multi-label and 4-level ordinal, each with its own zero head). One meta-step = inner
loop on every task, query loss, meta-gradient, Adam update.

Every implementation starts from the same weights (saved once by this script) and sees the same
episodes. A task's head is zero at the start of every task for every implementation (torchcross
creates a new zero head per task; the peers' shared head is zeroed before each task), so all compute
the same function; before timing each implementation computes the meta-gradient of the first
meta-batch and the maximum difference to the plain autograd loop is reported (float64 where the
library supports it, and float32).

How the peers are run: torchcross 0.0.6 and this torchcross are both called ``torchcross``, so each
implementation lives in its own worker process, driven over a pipe by this script: workers of the
peers run with ``--peer-python`` (an environment where higher, learn2learn, torchopt and torchcross
0.0.6 are installed, see benchmarks/README.md for how to build it); the torchcross worker runs
with ``--ours-python`` and this repository first on ``sys.path``. Only one worker computes at a time;
repetitions are interleaved across implementations (rotating order) and medians reported. Peak
memory is the peak RSS of the worker process during one meta-step minus its RSS just before (Linux
``/proc/self/clear_refs``). Peers that are not installed are reported as skipped.

The ``probe`` section times evaluation with a frozen backbone: 100 fixed 5-shot episodes, linear
probe (100 Adam steps per head), ``FineTuner.predict_many`` (features once per image, heads fitted
in one batch) against fine-tuning each episode's head through the backbone with ``torch.optim``.

Usage:
    python benchmarks/maml.py --peer-python PEERENV/bin/python --reps 5 --json maml.json
    python benchmarks/maml.py --workloads A,X --impls torchcross,plain,torchcross-0.0.6
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import functools
import gc
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import write_json
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------ workloads


@dataclass(frozen=True)
class Workload:
    name: str
    in_channels: int
    image_size: int
    filters: int
    n_way: int
    k_shot: int
    n_query: int
    steps: int = 5
    lr: float = 0.4
    meta_batch: int = 4
    first_order: bool = False
    batch_norm: bool = True
    mixed: bool = False


_A = Workload("A", 1, 28, 64, 5, 5, 15)
_B = Workload("B", 3, 84, 32, 5, 1, 15, meta_batch=2)
WORKLOADS = {
    w.name: w
    for w in [
        _A,
        replace(_A, name="A-fo", first_order=True),
        replace(_A, name="A-nobn", batch_norm=False),
        _B,
        replace(_A, name="X", batch_norm=False, in_channels=3, mixed=True),
        # --quick: A in miniature (seconds), so that the script cannot rot
        replace(_A, name="tiny", filters=8, n_query=5, steps=2, meta_batch=2),
    ]
}
# X: 1x28x28 images; torchcross 0.0.6's CrossDomainMAML repeats grey inputs to 3 channels in front of the
# backbone, so every implementation gets that same backbone (Expand to 3 channels + Conv4 on 3 channels).
KINDS_X = [  # (task target name, classes)
    ("MULTICLASS_CLASSIFICATION", {i: f"c{i}" for i in range(5)}),
    ("BINARY_CLASSIFICATION", {0: "neg", 1: "pos"}),
    ("MULTILABEL_CLASSIFICATION", {0: "l0", 1: "l1", 2: "l2"}),
    ("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe"}),
]


class Expand3(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.expand(-1, 3, -1, -1)


def conv4_body(wl: Workload) -> nn.Sequential:
    blocks, c = [], wl.in_channels
    for _ in range(4):
        layers = [nn.Conv2d(c, wl.filters, 3, padding=1)]
        if wl.batch_norm:
            layers.append(nn.BatchNorm2d(wl.filters))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        blocks.append(nn.Sequential(*layers))
        c = wl.filters
    return nn.Sequential(*blocks, nn.Flatten())


def num_features(wl: Workload) -> int:
    return wl.filters * (wl.image_size // 16) ** 2


def make_batches(wl: Workload, count: int, seed: int) -> list[list[tuple]]:
    """``count`` meta-batches, each a list of ``(kind, classes, xs, ys, xq, yq)``."""
    g = torch.Generator().manual_seed(seed)
    channels = 1 if wl.mixed else wl.in_channels
    shape = (channels, wl.image_size, wl.image_size)

    def task(kind: str, classes: dict) -> tuple:
        keys = sorted(classes)
        n_s, n_q = wl.k_shot * len(keys), wl.n_query * len(keys)
        if kind == "MULTILABEL_CLASSIFICATION":
            ys = torch.randint(0, 2, (n_s, len(keys)), generator=g)
            yq = torch.randint(0, 2, (n_q, len(keys)), generator=g)
        elif kind == "BINARY_CLASSIFICATION":
            ys, yq = (torch.arange(n_s) % 2).reshape(n_s, 1), (torch.arange(n_q) % 2).reshape(n_q, 1)
        else:
            k = torch.tensor(keys)
            ys, yq = k.repeat_interleave(wl.k_shot), k.repeat_interleave(wl.n_query)
        return (
            kind,
            classes,
            torch.randn(n_s, *shape, generator=g),
            ys,
            torch.randn(n_q, *shape, generator=g),
            yq,
        )

    if wl.mixed:
        return [[task(k, c) for k, c in KINDS_X] for _ in range(count)]
    mc = ("MULTICLASS_CLASSIFICATION", {i: f"c{i}" for i in range(wl.n_way)})
    return [[task(*mc) for _ in range(wl.meta_batch)] for _ in range(count)]


def torch_loss(logits: Tensor, y: Tensor, kind: str, classes: dict) -> Tensor:
    if kind in ("BINARY_CLASSIFICATION", "MULTILABEL_CLASSIFICATION"):
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    if kind == "ORDINAL_REGRESSION":
        y = torch.searchsorted(torch.tensor(sorted(classes), device=y.device), y)
    return F.cross_entropy(logits, y)


def n_out(kind: str, classes: dict) -> int:
    return 1 if kind == "BINARY_CLASSIFICATION" else len(classes)


# ------------------------------------------------------------------------------- implementations


class Impl:
    """One implementation inside a worker: ``backward(batch)`` leaves the meta-gradient in ``.grad``."""

    first_order_ok = True
    mixed_ok = False
    only: frozenset[str] | None = None  # workloads to run on (None: all)

    def __init__(self, backbone: nn.Module, wl: Workload) -> None:
        self.backbone, self.wl = backbone, wl
        self.opt: torch.optim.Optimizer | None = None

    def params(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def backward(self, batch: list[tuple]) -> None:
        raise NotImplementedError

    def step(self, batch: list[tuple]) -> None:
        if self.opt is None:
            self.opt = torch.optim.Adam(self.params(), lr=1e-3)
        self.opt.zero_grad(set_to_none=True)
        self.backward(batch)
        self.opt.step()


class Ours(Impl):
    mixed_ok = True
    batching = "loop"

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        from torchcross.data.task import Task, TaskDescription
        from torchcross.learners import MAML

        self.maml = MAML(
            backbone,
            num_features(wl),
            inner_lr=wl.lr,
            num_inner_steps=wl.steps,
            first_order=wl.first_order,
            batching=self.batching,
        )
        self.make = lambda t: Task((t[2], t[3]), (t[4], t[5]), TaskDescription(t[0], t[1]))

    def params(self):
        return list(self.maml.parameters())

    def backward(self, batch):
        self.maml.meta_backward([self.make(t) for t in batch])


class OursVmap(Ours):
    batching = "vmap"
    mixed_ok = False


class OursVmapWhole(OursVmap):
    """vmap over the whole meta-batch at once (``vmap_chunk_size=None``; the default ``"auto"`` runs chunks
    of two tasks on a CPU): every task's graph held at once."""

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        self.maml.vmap_chunk_size = None


class OursCheckpoint(Ours):
    """Gradient checkpointing of the inner loop: less memory for one more forward pass per step."""

    only = frozenset({"A"})

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        self.maml.checkpoint = True


class Plain(Impl):
    """torch.autograd.grad(create_graph=True) + functional_call, loop over tasks, one backward."""

    mixed_ok = True

    def backward(self, batch):
        params = dict(self.backbone.named_parameters())
        losses = []
        for kind, classes, xs, ys, xq, yq in batch:
            w = torch.zeros(
                n_out(kind, classes),
                num_features(self.wl),
                dtype=xs.dtype,
                device=xs.device,
                requires_grad=True,
            )
            b = torch.zeros(n_out(kind, classes), dtype=xs.dtype, device=xs.device, requires_grad=True)
            fast = dict(params)
            for _ in range(self.wl.steps):
                loss = torch_loss(
                    torch.func.functional_call(self.backbone, fast, (xs,)) @ w.T + b, ys, kind, classes
                )
                grads = torch.autograd.grad(
                    loss, [*fast.values(), w, b], create_graph=not self.wl.first_order
                )
                fast = {k: v - self.wl.lr * g for (k, v), g in zip(fast.items(), grads)}
                w, b = w - self.wl.lr * grads[-2], b - self.wl.lr * grads[-1]
            feats = torch.func.functional_call(self.backbone, fast, (xq,))
            losses.append(torch_loss(feats @ w.T + b, yq, kind, classes))
        torch.stack(losses).mean().backward()


class _WithHead(Impl):
    """Peers on single-kind workloads: Sequential(backbone, head) with a meta-learned head that starts at zero.

    At the checked (first) meta-step every task starts from the zero head, as in torchcross; zeroing the
    head in place before each task would break torchopt's and torchcross 0.0.6's graphs, and letting it
    be meta-learned afterwards costs the same.
    """

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        self.model = nn.Sequential(backbone, nn.Linear(num_features(wl), wl.n_way)).to(
            next(backbone.parameters())  # its dtype and device
        )

        nn.init.zeros_(self.model[1].weight)
        nn.init.zeros_(self.model[1].bias)

    def params(self):
        return list(self.model.parameters())


class Higher(_WithHead):
    """higher.innerloop_ctx(copy_initial_weights=False); query losses stacked, one backward."""

    per_task_backward = False

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        import higher

        self.higher = higher
        self.inner = torch.optim.SGD(self.model.parameters(), lr=wl.lr)

    def backward(self, batch):
        fo = self.wl.first_order
        losses = []
        for kind, classes, xs, ys, xq, yq in batch:
            with self.higher.innerloop_ctx(
                self.model, self.inner, copy_initial_weights=False, track_higher_grads=not fo
            ) as (fmodel, diffopt):
                for _ in range(self.wl.steps):
                    diffopt.step(torch_loss(fmodel(xs), ys, kind, classes))
                loss = torch_loss(fmodel(xq), yq, kind, classes) / len(batch)
                if fo:  # fast weights are detached leaves: their gradient is the first-order meta-gradient
                    for p, g in zip(self.model.parameters(), torch.autograd.grad(loss, fmodel.fast_params)):
                        p.grad = g if p.grad is None else p.grad + g
                elif self.per_task_backward:
                    loss.backward()
                else:
                    losses.append(loss)
        if losses:
            torch.stack(losses).sum().backward()


class HigherPerTask(Higher):
    """higher as in its MAML example: backward inside the task loop (frees each task's graph)."""

    per_task_backward = True
    only = frozenset({"A"})


class Learn2Learn(_WithHead):
    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import learn2learn as l2l
        self.maml = l2l.algorithms.MAML(self.model, lr=wl.lr, first_order=wl.first_order)

    def backward(self, batch):
        losses = []
        for kind, classes, xs, ys, xq, yq in batch:
            learner = self.maml.clone()
            for _ in range(self.wl.steps):
                learner.adapt(torch_loss(learner(xs), ys, kind, classes))
            losses.append(torch_loss(learner(xq), yq, kind, classes))
        torch.stack(losses).mean().backward()


class TorchOpt(_WithHead):
    """torchopt functional API: torchopt.sgd update + apply_updates(inplace=False)."""

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        import torchopt

        self.torchopt, self.inner = torchopt, torchopt.sgd(lr=wl.lr)
        self.names = [k for k, _ in self.model.named_parameters()]

    def backward(self, batch):
        losses = []
        for kind, classes, xs, ys, xq, yq in batch:
            fast = tuple(self.model.parameters())
            state = self.inner.init(fast)
            for _ in range(self.wl.steps):
                loss = torch_loss(
                    torch.func.functional_call(self.model, dict(zip(self.names, fast)), (xs,)),
                    ys,
                    kind,
                    classes,
                )
                grads = torch.autograd.grad(loss, fast, create_graph=not self.wl.first_order)
                updates, state = self.inner.update(grads, state, params=fast, inplace=False)
                fast = self.torchopt.apply_updates(fast, updates, inplace=False)
            losses.append(
                torch_loss(
                    torch.func.functional_call(self.model, dict(zip(self.names, fast)), (xq,)),
                    yq,
                    kind,
                    classes,
                )
            )
        torch.stack(losses).mean().backward()


class TorchCross006(Impl):
    """torchcross 0.0.6: MAML on single-kind workloads (head starting at zero), CrossDomainMAML on X."""

    first_order_ok = False  # its inner loop is torchopt.MetaSGD, always second order
    mixed_ok = True

    def __init__(self, backbone, wl):
        super().__init__(backbone, wl)
        import torchopt

        from torchcross.cd.losses import get_loss_func
        from torchcross.data.task import Task, TaskDescription, TaskTarget
        from torchcross.models.maml import MAML, CrossDomainMAML

        if next(backbone.parameters()).dtype != torch.float32:
            raise TypeError("torchcross 0.0.6 builds float32 heads: float32 only")
        self.Task, self.Desc, self.Target, self.loss_func = Task, TaskDescription, TaskTarget, get_loss_func
        inner = functools.partial(torchopt.MetaSGD, lr=wl.lr)
        evaluate = functools.partial(torch.optim.SGD, lr=wl.lr)
        if wl.mixed:  # 0.0.6 puts its own Expand(-1, 3, -1, -1) in front of the backbone
            self.maml = CrossDomainMAML(
                backbone[1], num_features(wl), inner, evaluate, wl.steps, head_init="zero"
            )
        else:
            desc = TaskDescription(
                TaskTarget.MULTICLASS_CLASSIFICATION, {i: f"c{i}" for i in range(wl.n_way)}
            )
            # reset_head="zero" zeroes the head in place between tasks, which breaks 0.0.6's own graph
            # in meta-batches of several tasks; start the (meta-learned) head at zero instead.
            self.maml = MAML(backbone, num_features(wl), desc, inner, evaluate, wl.steps)
            nn.init.zeros_(self.maml.head.weight)
            nn.init.zeros_(self.maml.head.bias)
        self.maml.train()

    def params(self):
        return list(self.maml.parameters())

    def backward(self, batch):
        tasks = [self.Task((t[2], t[3]), (t[4], t[5]), self.Desc(self.Target[t[0]], t[1])) for t in batch]
        logits = self.maml(tasks)
        losses = [self.loss_func(self.Target[t[0]], t[1])(lg, t[5]) for t, lg in zip(batch, logits)]
        torch.stack(losses).mean().backward()


IMPLS = {
    "torchcross": Ours,
    "torchcross-vmap": OursVmap,
    "torchcross-vmap-whole": OursVmapWhole,
    "torchcross-checkpoint": OursCheckpoint,
    "plain": Plain,
    "higher": Higher,
    "higher-per-task": HigherPerTask,
    "learn2learn": Learn2Learn,
    "torchopt": TorchOpt,
    "torchcross-0.0.6": TorchCross006,
}
OURS = {"torchcross", "torchcross-vmap", "torchcross-vmap-whole", "torchcross-checkpoint"}

# ------------------------------------------------------------------------------------ the worker


def _rss_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peak_rss_delta_mib(fn) -> float | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        gc.collect()
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) / 1024


def worker(name: str, wl: Workload, data: Path, threads: int) -> None:
    """Serve commands on stdin: ``check <dtype>``, ``warmup <n>``, ``step <i>``, ``mem``, ``quit``."""
    torch.set_num_threads(threads)
    if name in OURS:
        sys.path.insert(0, str(REPO))
    state = torch.load(data / "weights.pt")
    batches = torch.load(data / "batches.pt", weights_only=False)

    def backbone(dtype: torch.dtype) -> nn.Module:
        body = conv4_body(wl)
        body.load_state_dict(state)
        net = nn.Sequential(Expand3(), body) if wl.mixed else body
        return net.to(dtype).train()

    def cast(batch, dtype):
        return [(k, c, xs.to(dtype), ys, xq.to(dtype), yq) for k, c, xs, ys, xq, yq in batch]

    impl = None
    for line in sys.stdin:
        cmd, *arg = line.split()
        try:
            if cmd == "check":
                dtype = getattr(torch, arg[0])
                net = backbone(dtype)
                check = batches[0] if wl.mixed else batches[0][:1]  # one task, or one of each kind
                IMPLS[name](net, wl).backward(cast(check, dtype))
                torch.save([p.grad for p in net.parameters()], data / f"grad-{name}-{arg[0]}.pt")
                reply = "ok"
            elif cmd == "warmup":
                impl = impl or IMPLS[name](backbone(torch.float32), wl)
                for i in range(int(arg[0])):
                    impl.step(batches[i % len(batches)])
                reply = "ok"
            elif cmd == "step":
                batch = batches[int(arg[0]) % len(batches)]
                gc.collect()
                gc.disable()
                t0 = time.perf_counter()
                impl.step(batch)
                reply = str(time.perf_counter() - t0)
                gc.enable()
            elif cmd == "mem":
                reply = str(peak_rss_delta_mib(functools.partial(impl.step, batches[0])))
            else:
                return
        except Exception as e:  # reported to the coordinator, which skips this implementation
            reply = f"error {type(e).__name__}: {e}".replace("\n", " ")[:500]
        print(reply, flush=True)


# ------------------------------------------------------------------------------- the coordinator


class Worker:
    def __init__(self, python: str, name: str, wl: Workload, data: Path, threads: int) -> None:
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "--worker",
            name,
            "--workloads",
            wl.name,
            "--data",
            str(data),
            "--threads",
            str(threads),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir()
        )

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        return reply or "error worker died"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=60)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                pipe.close()


def run_workload(wl: Workload, names: list[str], args) -> dict:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        torch.manual_seed(args.seed)
        body = conv4_body(wl)
        torch.save(body.state_dict(), data / "weights.pt")
        torch.save(make_batches(wl, 3, args.seed + 1), data / "batches.pt")
        workers = {}
        for name in names:
            cls = IMPLS[name]
            if cls.only is not None and wl.name not in cls.only:
                continue
            if wl.first_order and not cls.first_order_ok:
                results[name] = {"skipped": "no first-order mode"}
            elif wl.mixed and not cls.mixed_ok:
                results[name] = {"skipped": "cannot run mixed task kinds"}
            else:
                workers[name] = Worker(
                    args.ours_python if name in OURS else args.peer_python, name, wl, data, args.threads
                )
        # meta-gradient check, then timing
        for dtype in ("float64", "float32"):
            for name, w in list(workers.items()):
                reply = w.ask(f"check {dtype}")
                if reply != "ok":
                    results.setdefault(name, {})[f"check_{dtype}"] = reply
        ref = {
            dt: torch.load(data / f"grad-plain-{dt}.pt")
            for dt in ("float64", "float32")
            if (data / f"grad-plain-{dt}.pt").exists()
        }
        for name in workers:
            for dt, grads in ref.items():
                path = data / f"grad-{name}-{dt}.pt"
                if path.exists():
                    mine = torch.load(path)
                    scale = max(float(g.abs().max()) for g in grads)
                    diff = max(float((a - b).abs().max()) for a, b in zip(mine, grads))
                    results.setdefault(name, {})[f"grad_rel_diff_{dt}"] = diff / scale
        for name, w in list(workers.items()):
            reply = w.ask(f"warmup {args.warmup}")
            if reply != "ok":
                results.setdefault(name, {})["skipped"] = reply
                w.close()
                del workers[name]
        times: dict[str, list[float]] = {n: [] for n in workers}
        order = list(workers)
        for rep in range(args.reps):
            for name in order[rep % len(order) :] + order[: rep % len(order)]:
                times[name].append(float(workers[name].ask(f"step {rep}")))
        for name, w in workers.items():
            mem = [w.ask("mem") for _ in range(2)]
            results.setdefault(name, {}).update(
                median_ms=statistics.median(times[name]) * 1e3,
                times_s=times[name],
                peak_rss_delta_mib=max(float(m) for m in mem) if "None" not in mem else None,
            )
            w.close()
    fastest_peer = min(
        (r["median_ms"] for n, r in results.items() if "median_ms" in r and n not in OURS), default=None
    )
    lowest_peer_mem = min(
        (
            r["peak_rss_delta_mib"]
            for n, r in results.items()
            if r.get("peak_rss_delta_mib") and n not in OURS
        ),
        default=None,
    )
    fastest_name = min(
        (n for n, r in results.items() if "median_ms" in r and n not in OURS),
        key=lambda n: results[n]["median_ms"],
        default=None,
    )
    summary: dict[str, object] = {"fastest_peer": fastest_name}
    loop = results.get("torchcross", {})
    for name in ("torchcross", "torchcross-vmap", "torchcross-vmap-whole"):
        r = results.get(name, {})
        if fastest_peer and "median_ms" in r:
            summary[f"{name}_time_vs_fastest_peer"] = r["median_ms"] / fastest_peer
        if name != "torchcross" and r.get("peak_rss_delta_mib") and loop.get("peak_rss_delta_mib"):
            summary[f"{name}_memory_vs_loop"] = r["peak_rss_delta_mib"] / loop["peak_rss_delta_mib"]
    results["summary"] = summary
    for r in results.values():
        if "median_ms" in r:
            r["tasks_per_s"] = wl.meta_batch / (r["median_ms"] / 1e3)
            r["ratio_vs_fastest_peer"] = r["median_ms"] / fastest_peer if fastest_peer else None
            if lowest_peer_mem and r.get("peak_rss_delta_mib") is not None:
                r["mem_ratio_vs_lowest_peer"] = r["peak_rss_delta_mib"] / lowest_peer_mem
    return results


def run_probe(args) -> dict:
    """Linear-probe evaluation of 100 fixed episodes: batched FineTuner against per-episode fine-tuning."""
    sys.path.insert(0, str(REPO))
    from torchcross.data.task import Task, TaskDescription
    from torchcross.learners import FineTuner

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    wl = _A
    backbone = conv4_body(wl).eval()
    g = torch.Generator().manual_seed(args.seed)
    pool = torch.randn(1000, 1, 28, 28, generator=g)
    labels = torch.arange(1000) % 5
    desc = TaskDescription("MULTICLASS_CLASSIFICATION", {i: f"c{i}" for i in range(5)})
    tasks = []
    for _ in range(100):
        idx = torch.cat(
            [torch.nonzero(labels == c).flatten()[torch.randperm(200, generator=g)[:15]] for c in range(5)]
        )
        s, q = idx.reshape(5, 15)[:, :5].flatten(), idx.reshape(5, 15)[:, 5:].flatten()
        tasks.append(Task((pool[s], labels[s]), (pool[q], labels[q]), desc))
    tuner = FineTuner(backbone, num_features(wl), num_steps=100, lr=1e-2, optimizer="adam")
    t0 = time.perf_counter()
    batched = tuner.predict_many(tasks)
    t_batched = time.perf_counter() - t0

    def naive(task):
        model = nn.Sequential(copy.deepcopy(backbone), nn.Linear(num_features(wl), 5)).eval()
        nn.init.zeros_(model[1].weight)
        nn.init.zeros_(model[1].bias)
        for p in model[0].parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(model[1].parameters(), lr=1e-2)
        for _ in range(100):
            opt.zero_grad()
            F.cross_entropy(model(task.support[0]), task.support[1]).backward()
            opt.step()
        with torch.no_grad():
            return model(task.query[0])

    n_naive = args.probe_naive_episodes
    t0 = time.perf_counter()
    reference = [naive(t) for t in tasks[:n_naive]]
    t_naive = (time.perf_counter() - t0) * len(tasks) / n_naive
    diff = max(float((a - b).abs().max()) for a, b in zip(batched, reference))
    return {
        "episodes": len(tasks),
        "batched_s": t_batched,
        "naive_s_extrapolated": t_naive,
        "naive_episodes_timed": n_naive,
        "speedup": t_naive / t_batched,
        "max_abs_logit_diff": diff,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return the report (also written as JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="A,A-fo,A-nobn,B,X")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--peer-python", default=sys.executable, help="interpreter with the peers installed")
    p.add_argument(
        "--ours-python", default=sys.executable, help="interpreter for this torchcross (torch + numpy)"
    )
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-probe", action="store_true")
    p.add_argument(
        "--probe-naive-episodes", type=int, default=10, help="naive episodes timed (extrapolated to 100)"
    )
    p.add_argument("--json", metavar="PATH")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of seconds: workload 'tiny', loop, vmap and plain autograd, one repetition, no probe",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, WORKLOADS[args.workloads], Path(args.data), args.threads)
        return {}
    if args.quick:
        args.workloads, args.reps, args.warmup, args.no_probe = "tiny", 1, 0, True
        args.impls = "torchcross,torchcross-vmap,plain"
    names = [n for n in args.impls.split(",") if n]
    if "plain" not in names:
        names.insert(0, "plain")  # reference of the gradient check
    report = {
        "torch": torch.__version__,
        "threads": args.threads,
        "reps": args.reps,
        "peer_python": args.peer_python,
        "cpu_count": os.cpu_count(),
        "workloads": {},
    }
    for wl_name in args.workloads.split(","):
        wl = WORKLOADS[wl_name]
        results = run_workload(wl, names, args)
        summary = results.pop("summary")
        report["workloads"][wl_name] = {"config": asdict(wl), "results": results, "summary": summary}
        print(
            f"\n### {wl_name}  ({wl.meta_batch} tasks, {wl.steps} steps, {'first' if wl.first_order else 'second'} order"
            f"{', BatchNorm' if wl.batch_norm else ''}{', mixed kinds' if wl.mixed else ''})"
        )
        print(
            "| impl | median ms/step | tasks/s | x fastest peer | peak MiB | x lowest peer | grad diff f64 | grad diff f32 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, r in sorted(results.items(), key=lambda kv: kv[1].get("median_ms", 1e12)):
            if "median_ms" not in r:
                print(f"| {name} | {r.get('skipped') or r} | | | | | | |")
                continue
            fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
            print(
                f"| {name} | {r['median_ms']:.0f} | {r['tasks_per_s']:.2f} | {fmt(r.get('ratio_vs_fastest_peer'), '.2f')} "
                f"| {fmt(r.get('peak_rss_delta_mib'), '.0f')} | {fmt(r.get('mem_ratio_vs_lowest_peer'), '.2f')} "
                f"| {fmt(r.get('grad_rel_diff_float64'), '.1e')} | {fmt(r.get('grad_rel_diff_float32'), '.1e')} |"
            )
        print(
            "ratios: "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary.items() if isinstance(v, float))
            + f" (fastest peer: {summary['fastest_peer']})"
        )
        sys.stdout.flush()
    if not args.no_probe:
        probe = run_probe(args)
        report["probe"] = probe
        print(
            f"\n### linear probe, 100 episodes: batched {probe['batched_s']:.2f} s, per-episode through the backbone "
            f"{probe['naive_s_extrapolated']:.1f} s (extrapolated from {probe['naive_episodes_timed']}): "
            f"{probe['speedup']:.0f}x; max |logit diff| {probe['max_abs_logit_diff']:.1e}"
        )
    print(
        "\ngrad diff: max |g - g_plain| / max |g_plain| of the meta-gradient of one task (X: the four tasks); "
        "torchcross 0.0.6 builds float32 heads, so it is checked in float32 only."
    )
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
