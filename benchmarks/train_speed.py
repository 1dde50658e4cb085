"""Training and scoring speed: a research-style baseline against sclib's fast path.

One process, one data split, one seed and the same start weights for every variant:

- ``baseline``: the work done the way the research code does it (see
  ``research_baseline.py``). It trains in float32 with contiguous tensors, and a
  DataLoader decodes and transforms every image with PIL on every step. The saliency
  comes from a full ``backward()`` over the whole batch, and a per-sample loop smooths
  and pastes before the training pass.
- ``fast``: ``sclib.train.train`` as a run uses it: a uint8 image cache, batched rotation
  and normalisation, channels-last tensors, autocast from ``--precision``, input-only
  saliency for the donor images, batched paste.
- variants of the fast path (float32 contiguous, float32 channels-last, bfloat16
  channels-last) so that the effect of each lever shows.

The variants take turns: each round runs one step of every variant, in an order that
rotates from round to round, so that a change in machine load hits them alike. The
first ``--warmup`` rounds are not timed, and then ``--steps`` rounds are. A step is timed
from fetching the batch to the end of the optimiser step. Scoring speed is measured on
``--eval-images`` test images. The backbones use random weights
(``weights=None``), which changes nothing about speed. The caches are built once, in a
temporary folder unless ``--cache-dir`` is given, and their build time is reported as
a one-off cost.

Usage::

    python benchmarks/train_speed.py --profile both --json runs/train_speed.json
    python benchmarks/train_speed.py --profile quick --steps 3 --warmup 1   # short check
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import sclib
from sclib.config import Config, get_profile
from sclib.experiment import PreparedData, prepare_data
from sclib.models.two_head import TwoHeadModel, build_model
from sclib.notebook import prepare_data_root
from sclib.runs import atomic_write_json
from sclib.train import score_images, train
from sclib.utils import autocast_dtype, resolve_device

from research_baseline import (
    PHASES,
    BalancedKeySampler,
    ResearchStyleDataset,
    ResearchStyleTrainer,
    StepTiming,
    score_research_style,
)

logger = logging.getLogger("train_speed")

# importlib, because ``sclib.augment.saliencycut`` as an attribute is the function that
# the package re-exports, not the module whose globals the timers replace.
SALIENCYCUT_MODULE = importlib.import_module("sclib.augment.saliencycut")

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# (name, precision, channels_last) of the fast-path variants; "bf16" runs only where
# bfloat16 is native (CUDA, AMX, AVX512-BF16) unless --variants all.
VARIANTS = (
    ("fp32, contiguous", "fp32", False),
    ("fp32, channels-last", "fp32", True),
    ("bf16, channels-last", "bf16", True),
)


def machine_info() -> dict[str, Any]:
    """Describe the CPU, the accelerator, torch and the load average."""
    model_name = platform.processor() or "unknown"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and model_name in ("unknown", "x86_64", ""):
                    model_name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    info = {
        "cpu": model_name,
        "cpu_count": os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "sclib": sclib.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }
    return info


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def profile_config(args: argparse.Namespace, profile: str) -> Config:
    """Return the config of ``profile`` with the benchmark's overrides applied."""
    overrides: dict[str, Any] = {
        "weights": None,
        "device": args.device,
        "seed": args.seed,
        "precision": args.precision,
        "channels_last": True,
        "max_test": args.eval_images,
    }
    for field in ("batch_size", "backbone", "image_size", "n_anomaly", "max_train_normal"):
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    return get_profile(profile, **overrides)


def build_start_model(config: Config) -> TwoHeadModel:
    """Build the model of ``config`` with weights that depend only on ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        return build_model(
            config.replace(channels_last=False), weights=None, generator=generator
        )


class CallTimer:
    """Wall-clock time spent in some functions of a module while the timer is installed.

    The functions are replaced by timed wrappers and restored on exit. On CUDA each
    wrapper synchronises before and after the call, so it measures the work, not the
    launch.
    """

    def __init__(self, module: ModuleType, names: tuple[str, ...], device: torch.device):
        self.module = module
        self.names = tuple(name for name in names if callable(getattr(module, name, None)))
        self.device = device
        self.seconds = dict.fromkeys(self.names, 0.0)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.names, 0.0)

    def _wrap(self, name: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._synchronize()
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._synchronize()
                self.seconds[name] += time.perf_counter() - started

        return timed

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def installed(self) -> Iterator[CallTimer]:
        originals = {name: getattr(self.module, name) for name in self.names}
        try:
            for name, function in originals.items():
                setattr(self.module, name, self._wrap(name, function))
            yield self
        finally:
            for name, function in originals.items():
                setattr(self.module, name, function)


class FastPathRunner:
    """``sclib.train.train`` one step at a time, on weights that persist between steps.

    Each :meth:`step` calls ``train`` for a single step with the seed ``config.seed +
    round_index``, so every round draws a new batch. ``train`` builds a new Adam
    optimiser at each call, which changes the update but not the work of a step.

    Args:
        config: the run config; its schedule fields are replaced by a single step.
        data: the prepared split with its uint8 caches.
        breakdown: time ``input_saliency`` inside the augmentation phase as well.
    """

    def __init__(self, config: Config, data: PreparedData, breakdown: bool = True):
        self.config = config.replace(epochs=1, steps_per_epoch=1, log_every=1)
        self.data = data
        self.model = build_start_model(config)
        device = resolve_device(config.device)
        self.timer = CallTimer(SALIENCYCUT_MODULE, ("input_saliency",), device)
        self.breakdown = breakdown and "input_saliency" in self.timer.names

    def step(self, round_index: int) -> StepTiming:
        """Run one training step and return its timing, split into ``PHASES``."""
        config = self.config.replace(seed=self.config.seed + round_index)
        self.timer.reset()
        context = self.timer.installed() if self.breakdown else contextlib.nullcontext()
        with context:
            history = train(
                self.model, self.data.train_images, self.data.train_labels, config,
                progress=False,
            )  # fmt: skip

        row = history.iloc[-1]
        seconds = config.batch_size / row["images_per_s"]
        data_seconds = seconds * row["data_time_share"]
        augment_seconds = seconds * row["augment_time_share"]
        phase_seconds: dict[str, float | None] = {
            "data": data_seconds,
            "saliency": None,
            "smooth_and_paste": None,
            "train_pass": max(seconds - data_seconds - augment_seconds, 0.0),
        }
        if self.breakdown:
            saliency_seconds = self.timer.seconds["input_saliency"]
            phase_seconds["saliency"] = saliency_seconds
            phase_seconds["smooth_and_paste"] = max(augment_seconds - saliency_seconds, 0.0)
        return StepTiming(seconds, phase_seconds, float(row["loss"]))


def build_baseline(config: Config, data: PreparedData, workers: int) -> ResearchStyleTrainer:
    """Build the research-style trainer on the same split, seed and start weights."""
    model = build_start_model(config)
    spec = model.spec
    paths = [record.path for record in data.train_records]
    labels = data.train_labels.tolist()
    dataset = ResearchStyleDataset(paths, config.image_size, spec.mean, spec.std)
    sampler = BalancedKeySampler(
        normal_indices=[index for index, label in enumerate(labels) if label == 0],
        anomaly_indices=[index for index, label in enumerate(labels) if label == 1],
        batch_size=config.batch_size,
        seed=config.seed,
    )
    return ResearchStyleTrainer(
        model,
        dataset,
        sampler,
        device=resolve_device(config.device),
        lr=config.lr,
        weight_decay=config.weight_decay,
        grad_clip=config.grad_clip if config.grad_clip is not None else float("inf"),
        grid=config.saliency_grid,
        order=config.bspline_order,
        threshold=config.saliency_threshold,
        num_workers=workers,
        seed=config.seed,
    )


def summarize_steps(timings: list[StepTiming], batch_size: int) -> dict[str, Any]:
    """Return throughput, step times, mean loss and phase shares of the timed steps.

    A phase share is None when that phase was not timed. ``augment`` is the share of
    saliency plus smoothing and paste.
    """
    total = sum(timing.seconds for timing in timings)
    breakdown: dict[str, float | None] = {}
    for phase in PHASES:
        values = [timing.phase_seconds[phase] for timing in timings]
        breakdown[phase] = None if None in values else sum(values) / total
    breakdown["augment"] = max(1.0 - breakdown["data"] - breakdown["train_pass"], 0.0)
    return {
        "train_images_per_s": batch_size * len(timings) / total,
        "step_seconds": [round(timing.seconds, 4) for timing in timings],
        "mean_loss": sum(timing.loss for timing in timings) / len(timings),
        "breakdown": breakdown,
    }


def fast_inference(model: TwoHeadModel, data: PreparedData, config: Config) -> float:
    """Return the images/s of ``score_images`` on the test cache after one warm-up batch."""
    options = {
        "batch_size": config.eval_batch_size,
        "device": config.device,
        "precision": config.precision,
        "channels_last": config.channels_last,
    }
    score_images(model, data.test_images[:2], **options)
    started = time.perf_counter()
    score_images(model, data.test_images, **options)
    return len(data.test_images) / (time.perf_counter() - started)


def baseline_inference(
    model: TwoHeadModel, data: PreparedData, config: Config, workers: int
) -> float:
    """Return the images/s of research-style scoring, decoding each file, after a warm-up."""
    device = resolve_device(config.device)
    spec = model.spec
    paths = [record.path for record in data.test_records]
    warmup = ResearchStyleDataset(paths[:2], config.image_size, spec.mean, spec.std)
    score_research_style(model, warmup, config.eval_batch_size, device, workers)
    dataset = ResearchStyleDataset(paths, config.image_size, spec.mean, spec.std)
    _, seconds = score_research_style(model, dataset, config.eval_batch_size, device, workers)
    return len(dataset) / seconds


def fast_variants(args: argparse.Namespace, config: Config) -> list[tuple[str, Config]]:
    """Return the fast-path variants to run besides the default one, as (name, config)."""
    if args.variants == "none":
        return []
    device = resolve_device(config.device)
    default_dtype = autocast_dtype(device, config.precision)
    native_bf16 = autocast_dtype(device, "auto") is not None
    chosen = []
    for name, precision, channels_last in VARIANTS:
        if precision == "bf16" and not native_bf16 and args.variants != "all":
            continue
        same_dtype = autocast_dtype(device, precision) == default_dtype
        if same_dtype and channels_last == config.channels_last:
            continue  # this is the default fast path, measured already
        chosen.append((name, config.replace(precision=precision, channels_last=channels_last)))
    return chosen


def run_rounds(
    runners: dict[str, Callable[[int], StepTiming]], warmup: int, steps: int
) -> dict[str, list[StepTiming]]:
    """Run one step of every runner per round and return the timings of the timed rounds.

    The runners take turns within a round, and the order rotates from round to round, so
    a change in machine load affects them alike.
    """
    names = list(runners)
    timings: dict[str, list[StepTiming]] = {name: [] for name in names}
    for round_index in range(warmup + steps):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            timing = runners[name](round_index)
            if round_index >= warmup:
                timings[name].append(timing)
        print(f"  round {round_index + 1}/{warmup + steps} done", flush=True)
    return timings


def benchmark_profile(
    args: argparse.Namespace, profile: str, cache_dir: Path
) -> dict[str, Any]:
    """Run every variant of one profile and return its results (JSON-ready)."""
    config = profile_config(args, profile)
    started = time.perf_counter()
    data = prepare_data(config, prepare_data_root(args.data_root), cache_dir=cache_dir)
    cache_seconds = time.perf_counter() - started
    n_train, n_test = len(data.train_images), len(data.test_images)
    print(
        f"\nprofile {profile}: {config.backbone}, {config.image_size} px, batch "
        f"{config.batch_size}, {config.n_scales} scales, {config.augmentation}, "
        f"train_backbone={getattr(config, 'train_backbone', True)}; {args.steps} timed "
        f"rounds after {args.warmup} warm-up; {n_train} training and {n_test} test images "
        f"(cache built in {cache_seconds:.1f} s)",
        flush=True,
    )
    result: dict[str, Any] = {
        "config": config.to_dict(),
        "n_train_images": n_train,
        "n_test_images": n_test,
        "cache_build_s": cache_seconds,
        "load_before": load_average(),
    }

    baseline_trainer = build_baseline(config, data, args.baseline_workers)
    fast = FastPathRunner(config, data)
    default_name = _variant_name(fast.config)
    runners: dict[str, Callable[[int], StepTiming]] = {
        "baseline": lambda round_index: baseline_trainer.step(),
        "fast": fast.step,
    }
    for name, variant_config in fast_variants(args, config):
        runners[name] = FastPathRunner(variant_config, data, breakdown=False).step
    timings = run_rounds(runners, args.warmup, args.steps)

    baseline = {
        "precision": "fp32",
        "channels_last": False,
        "data_workers": args.baseline_workers,
        **summarize_steps(timings["baseline"], config.batch_size),
    }
    fast_result = {
        "precision": default_name.split(",")[0],
        "channels_last": config.channels_last,
        **summarize_steps(timings["fast"], config.batch_size),
    }
    baseline["inference_images_per_s"] = baseline_inference(
        baseline_trainer.model, data, config, args.baseline_workers
    )
    fast_result["inference_images_per_s"] = fast_inference(fast.model, data, config)
    result["baseline"], result["fast"] = baseline, fast_result
    _print_row("research-style baseline", baseline)
    _print_row(f"sclib fast path ({default_name})", fast_result)

    per_round = [
        slow.seconds / quick.seconds
        for slow, quick in zip(timings["baseline"], timings["fast"])
    ]
    result["ratio"] = {
        "train": fast_result["train_images_per_s"] / baseline["train_images_per_s"],
        "train_per_round": [round(value, 3) for value in per_round],
        "train_median": statistics.median(per_round),
        "inference": fast_result["inference_images_per_s"] / baseline["inference_images_per_s"],
    }
    print(
        f"  speed-up: training {result['ratio']['train']:.2f}x (per round "
        f"{', '.join(f'{value:.2f}' for value in per_round)}), scoring "
        f"{result['ratio']['inference']:.2f}x",
        flush=True,
    )

    variants = [{"name": default_name, "default": True, **_summary(fast_result)}]
    for name in runners:
        if name not in ("baseline", "fast"):
            summary = summarize_steps(timings[name], config.batch_size)
            variants.append({"name": name, "default": False, **_summary(summary)})
    result["variants"] = sorted(variants, key=lambda row: row["train_images_per_s"])
    if len(variants) > 1:
        print("  fast-path variants (training images/s):")
        for row in result["variants"]:
            marker = "  (default)" if row["default"] else ""
            print(f"    {row['name']:<22} {row['train_images_per_s']:8.2f}{marker}", flush=True)
    result["load_after"] = load_average()
    return result


def _variant_name(config: Config) -> str:
    device = resolve_device(config.device)
    precision = "bf16" if autocast_dtype(device, config.precision) else "fp32"
    layout = "channels-last" if config.channels_last else "contiguous"
    return f"{precision}, {layout}"


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("train_images_per_s", "step_seconds")
    return {key: result[key] for key in keys}


def _percent(share: float | None) -> str:
    return "  n/a" if share is None else f"{100 * share:3.0f}%"


def _print_row(name: str, result: dict[str, Any]) -> None:
    shares = "  ".join(
        f"{phase} {_percent(result['breakdown'][phase])}" for phase in PHASES
    )
    print(
        f"  {name:<38} train {result['train_images_per_s']:7.2f} images/s "
        f"(step {sum(result['step_seconds']) / len(result['step_seconds']):6.2f} s; "
        f"{shares})  score {result['inference_images_per_s']:7.2f} images/s",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare the training and scoring speed of a research-style baseline "
        "with sclib's fast path, in one process on the same data."
    )
    parser.add_argument(
        "--profile",
        choices=("paper", "quick", "both", "tiny"),
        default="both",
        help="config profile to benchmark; both = quick, then paper (default: both)",
    )

    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed steps before the timed ones"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per step (default: the profile's)"
    )

    parser.add_argument(
        "--data-root",
        default="data/elpv",
        help="subset folder with train/ and test/ in the MVTec AD layout; a missing "
        "data/elpv is built from the elpv-dataset package (default: data/elpv)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="autocast of the fast path; auto = bfloat16 only where it is native",
    )
    parser.add_argument(
        "--variants",
        choices=("auto", "all", "none"),
        default="auto",
        help="fast-path variant table: auto skips bf16 where it is not native, all runs "
        "it anyway, none skips the table",
    )

    parser.add_argument(
        "--eval-images", type=int, default=64, help="test images scored per variant"
    )
    parser.add_argument(
        "--max-train-normal",
        type=int,
        default=None,
        help="training normals in the cache (default: the profile's, all for paper/quick)",
    )
    parser.add_argument(
        "--baseline-workers",
        type=int,
        default=0,
        help="DataLoader worker processes of the baseline; 0 decodes in the training process",
    )

    parser.add_argument("--backbone", default=None, help="override the profile's backbone")
    parser.add_argument(
        "--image-size", type=int, default=None, help="override the profile's input side (px)"
    )
    parser.add_argument(
        "--n-anomaly", type=int, default=None, help="override the labelled anomaly count"
    )

    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of split, sampling and weights")

    parser.add_argument(
        "--cache-dir",
        default=None,
        help="image cache folder to reuse (default: a temporary folder, removed at the end)",
    )
    parser.add_argument("--json", default=None, help="write all results to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="show sclib's INFO log lines")

    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json:
        # create the folder now, so that a long run does not fail at its last write
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in machine["cpu_flags"].items())
    print(
        f"machine: {machine['cpu']}, {machine['cpu_count']} cores ({flags}); "
        f"cpu capability {machine['cpu_capability']}; CUDA {machine['cuda'] or 'none'}; "
        f"torch {machine['torch']} with {machine['torch_threads']} threads; "
        f"load average {load_average()}",
        flush=True,
    )

    profiles = ("quick", "paper") if args.profile == "both" else (args.profile,)
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
        "machine": machine,
        "steps": args.steps,
        "warmup": args.warmup,
        "profiles": {},
    }
    with contextlib.ExitStack() as stack:
        if args.cache_dir is None:
            cache_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sclib-")))
        else:
            cache_dir = Path(args.cache_dir)
        for profile in profiles:
            results["profiles"][profile] = benchmark_profile(args, profile, cache_dir)

    if args.json:
        atomic_write_json(args.json, results)
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
