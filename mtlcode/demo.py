"""A one-minute tour: meta-train MAML on sinusoid regression and show what it learned.

Run it with ``python -m mtlcode.demo [--iterations N] [--out FIGURE.png]``.
"""

from __future__ import annotations

import argparse

import torch.nn.functional as F

import mtlcode
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="_build/demo_sinusoid.png", help="where to save the figure")
    args = parser.parse_args(argv)

    generator = mtlcode.seed_everything(args.seed)
    device = mtlcode.device()
    sinusoid = Sinusoid()
    maml = mtlcode.MAML(MLP([1, 40, 40, 1]), inner_lr=0.01, loss=F.mse_loss)
    mtlcode.meta_train(maml, lambda g: sinusoid.sample(25, 10, 10, generator=g), args.iterations,
                       meta_lr=1e-3, seed=args.seed, device=device)

    test_tasks = sinusoid.sample(600, 10, 100, generator=generator)
    for steps in (0, 1, 10):
        result = mtlcode.evaluate(maml, test_tasks, steps=steps, device=device)
        print(f"query MSE after {steps:2d} inner steps on 600 new tasks: {result}")

    from pathlib import Path

    fig = mtlcode.book.plots.sinusoid_fit(maml, test_tasks)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"figure saved to {args.out}")


if __name__ == "__main__":
    main()
