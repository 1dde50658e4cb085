"""Time quick-profile training steps on random images, with CPU time and page faults.

It is small enough to run once per process setting, for example to compare glibc malloc
tunables, which only take effect at process start::

    python benchmarks/train_steps.py 20
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/train_steps.py 20

It prints images/s, the user and system CPU seconds, and the minor page faults of the
training call.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from sclib.config import get_profile
from sclib.models import build_model
from sclib.train import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", type=int, nargs="?", default=12, help="training steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = get_profile(
        "quick", epochs=1, steps_per_epoch=args.steps, log_every=10_000, device="cpu"
    )
    generator = torch.Generator().manual_seed(0)
    size = config.image_size
    images = torch.randint(0, 256, (256, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.zeros(256, dtype=torch.long)
    labels[:10] = 1
    model = build_model(config)

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    train(model, images, labels, config, progress=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{args.steps * config.batch_size / seconds:.2f} images/s, "
        f"user {after.ru_utime - before.ru_utime:.1f} s, "
        f"sys {after.ru_stime - before.ru_stime:.1f} s, "
        f"minor faults {after.ru_minflt - before.ru_minflt}"
    )


if __name__ == "__main__":
    main()
