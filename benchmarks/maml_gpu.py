#!/usr/bin/env python
"""MAML on a GPU: the per-task loop against ``vmap``, the automatic choice, peers, and uint8 transfer.

Uses the workloads of ``benchmarks/maml.py`` (A: Conv4-64 + BatchNorm, 1x28x28, 5-way 5-shot 15 query,
5 SGD steps, second order; A-nobn; B: Conv4-32, 3x84x84, 5-way 1-shot; X: four task kinds) at
meta-batches of 4 and 16 tasks, all in this process on one device:

* **check**: the meta-gradient of the first tasks of the first meta-batch, on the device in float32 and
  float64, against the plain autograd loop in float64 on the CPU (``||g - g_ref|| / ||g_ref||`` over
  all parameters), for torchcross's loop and ``vmap`` paths and ``higher`` (when
  installed);
* **speed**: median ms per meta-step (inner loops, query loss, meta-gradient, Adam) after warm-up,
  with ``torch.cuda.synchronize``, and peak device memory of one step above what was allocated before;
  ``torchcross auto`` is ``batching="auto"``, which times loop and vmap once and keeps the faster;
* **transfer**: one 3x224x224 episode of 30 or 150 images to the device: float32 (as a float loader
  hands it over) against uint8 channels-last + ``normalize_batch`` there, pinned or not.

Usage (on a machine with a GPU; higher is optional):
    python benchmarks/maml_gpu.py --json results/maml_gpu.json
    python benchmarks/maml_gpu.py --device cpu --workloads A-nobn --meta-batches 2 --reps 1  # smoke test
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _report import write_json
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maml import (
    WORKLOADS,
    Expand3,
    Higher,
    HigherPerTask,
    Ours,
    OursVmap,
    Plain,
    Workload,
    conv4_body,
    make_batches,
)

from torchcross.datasets import normalize_batch


class OursAuto(Ours):
    batching = "auto"


IMPLS: dict[str, type] = {
    "torchcross loop": Ours,
    "torchcross vmap": OursVmap,
    "torchcross auto": OursAuto,
    "plain": Plain,
    "higher": Higher,
    "higher per task": HigherPerTask,
}


def has_higher() -> bool:
    try:
        import higher  # noqa: F401
    except ImportError:
        return False
    return True


def backbone(wl: Workload, state: dict, dtype: torch.dtype, device: str) -> nn.Module:
    body = conv4_body(wl)
    body.load_state_dict(state)
    net = nn.Sequential(Expand3(), body) if wl.mixed else body
    return net.to(device=device, dtype=dtype).train()


def move(batch: list[tuple], dtype: torch.dtype, device: str) -> list[tuple]:
    return [
        (k, c, xs.to(device, dtype), ys.to(device), xq.to(device, dtype), yq.to(device))
        for k, c, xs, ys, xq, yq in batch
    ]


def applicable(name: str, wl: Workload) -> bool:
    if wl.mixed:
        return name in ("torchcross loop", "torchcross auto", "plain")
    if name == "higher per task":
        return wl.name == "A"
    return True


def meta_gradient(name: str, wl: Workload, state: dict, batch: list[tuple], dtype, device) -> list:
    net = backbone(wl, state, dtype, device)
    IMPLS[name](net, wl).backward(move(batch, dtype, device))
    return [p.grad.detach().to("cpu", torch.float64) for p in net.parameters()]


def rel_err(grads: list, ref: list) -> float:
    """``||g - g_ref|| / ||g_ref||`` over all parameters at once (a conv bias before BatchNorm has a zero
    gradient, so per-parameter ratios would divide rounding noise by zero)."""
    g, r = torch.cat([x.flatten() for x in grads]), torch.cat([x.flatten() for x in ref])
    return float((g - r).norm() / r.norm())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_impl(name: str, wl: Workload, state: dict, batches: list, device: str, reps: int) -> dict:
    impl = IMPLS[name](backbone(wl, state, torch.float32, device), wl)
    try:
        for i in range(3):  # warm-up (and, for auto, calibration)
            impl.step(batches[i % len(batches)])
    except torch.cuda.OutOfMemoryError:
        del impl
        torch.cuda.empty_cache()
        return {"ms_per_step": float("nan"), "error": "out of memory"}
    sync(device)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        impl.step(batches[i % len(batches)])
        sync(device)
        times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"ms_per_step": 1e3 * statistics.median(times)}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        impl.step(batches[0])
        sync(device)
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
    chooser = getattr(getattr(impl, "maml", None), "_chooser", None)
    if name == "torchcross auto" and chooser is not None:
        out["auto_measured_s"] = {str(k[1]): v for k, v in chooser.measured.items()}
    return out


def run_workload(wl: Workload, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    state = conv4_body(wl).state_dict()
    batches = [move(b, torch.float32, args.device) for b in make_batches(wl, 3, args.seed)]
    cpu_batch = make_batches(wl, 1, args.seed)[0]
    names = [n for n in IMPLS if applicable(n, wl) and (has_higher() or not n.startswith("higher"))]

    check_batch = cpu_batch[: args.check_tasks] if not wl.mixed else cpu_batch
    ref = meta_gradient("plain", wl, state, check_batch, torch.float64, "cpu")
    checks = {}
    for name in names:
        if name in ("torchcross auto", "higher per task"):
            continue
        row = {
            "float32": rel_err(meta_gradient(name, wl, state, check_batch, torch.float32, args.device), ref)
        }
        if not name.startswith("higher"):
            row["float64"] = rel_err(
                meta_gradient(name, wl, state, check_batch, torch.float64, args.device), ref
            )
        checks[name] = row

    speed = {name: time_impl(name, wl, state, batches, args.device, args.reps) for name in names}
    return {"workload": wl.name, "meta_batch": len(batches[0]), "check": checks, "speed": speed}


def run_transfer(args: argparse.Namespace) -> dict:
    device, out = args.device, {}
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for n in (30, 150):
        u8 = torch.randint(0, 256, (n, 224, 224, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
        f32 = normalize_batch(u8, mean, std)
        variants = {
            "float32": lambda f32=f32: f32.to(device),
            "uint8 + normalize_batch": lambda u8=u8: normalize_batch(u8, mean, std, device=device),
        }
        if device.startswith("cuda"):
            f32_p, u8_p = f32.pin_memory(), u8.pin_memory()
            variants["float32 pinned"] = lambda f=f32_p: f.to(device, non_blocking=True)
            variants["uint8 pinned + normalize_batch"] = lambda u=u8_p: normalize_batch(
                u, mean, std, device=device, non_blocking=True
            )
        torch.testing.assert_close(variants["uint8 + normalize_batch"]().cpu(), f32)
        row = {}
        for name, fn in variants.items():
            for _ in range(3):
                fn()
            sync(device)
            times = []
            for _ in range(max(5, args.reps)):
                t0 = time.perf_counter()
                fn()
                sync(device)
                times.append(time.perf_counter() - t0)
            row[name] = 1e3 * statistics.median(times)
        out[f"{n} images"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--workloads", default="A,A-nobn,B,X")
    p.add_argument(
        "--meta-batches", default="4,16", help="tasks per meta-batch (X: multiples of its 4 kinds)"
    )
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--check-tasks", type=int, default=2, help="tasks in the gradient check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tf32", action="store_true", help="full float32 matmuls and convolutions")
    p.add_argument("--memory-fraction", type=float, help="cap this process's device memory (a smaller GPU)")
    p.add_argument("--no-transfer", action="store_true")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("CUDA is not available here; pass --device cpu for a smoke test")
    if args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction)

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "higher": has_higher(),
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "argv": sys.argv,
    }
    print(f"# {env}")
    report: dict[str, Any] = {"environment": env, "workloads": []}
    for name in args.workloads.split(","):
        for m in (int(x) for x in args.meta_batches.split(",")):
            wl = WORKLOADS[name]
            if wl.mixed and m != 4:
                continue  # X is one task of each of its four kinds
            res = run_workload(replace(wl, meta_batch=m), args)
            report["workloads"].append(res)
            print(f"\n## {wl.name}, meta-batch {res['meta_batch']}")
            print("| implementation | ms/step | peak MiB | rel. error f32 | rel. error f64 |")
            print("|---|---|---|---|---|")
            for impl, sp in res["speed"].items():
                ck = res["check"].get(impl, {})
                f32 = f"{ck['float32']:.1e}" if "float32" in ck else ""
                f64 = f"{ck['float64']:.1e}" if "float64" in ck else ""
                mib = f"{sp['peak_mib']:.0f}" if "peak_mib" in sp else ""
                ms = sp.get("error", f"{sp['ms_per_step']:.1f}")
                print(f"| {impl} | {ms} | {mib} | {f32} | {f64} |")
            auto = res["speed"].get("torchcross auto", {}).get("auto_measured_s")
            if auto:
                print(f"auto measured (s): {auto}")
            sys.stdout.flush()
    if not args.no_transfer:
        report["transfer"] = run_transfer(args)
        print("\n## one 3x224x224 episode to the device (ms)")
        for n, row in report["transfer"].items():
            print(f"{n}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
