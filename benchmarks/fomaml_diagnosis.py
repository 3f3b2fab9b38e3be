"""Why v2's first-order MAML stopped at a train accuracy of 0.12 (issue "A fair answer to the book's question").

v2 meta-trained MAML and first-order MAML alike on 20-way 1-shot episodes (one query per class,
meta-batch 4) with one inner step of 0.4. This script trains each inner loop below for 200
iterations (64 channels, as v2; seed 0, split 0's training alphabets) and records the training
accuracy per 25 iterations and the accuracy on 20 tasks of the *validation* alphabet after 0, 1x
and 5x the training steps. No test task is touched.

    python -m benchmarks.fomaml_diagnosis     # about 5 CPU-minutes; writes results/fomaml_diagnosis.json
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import mtlcode
from benchmarks.common import RESULTS, write_json
from benchmarks.omniglot import Protocol, small_splits, tasks
from mtlcode import MAML
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot

RUNS = [("fomaml", 0.4, 1), ("fomaml", 0.1, 1), ("fomaml", 0.1, 5), ("fomaml", 0.02, 1), ("maml", 0.4, 1)]
ITERATIONS = 200


def main() -> dict:
    torch.set_num_threads(1)
    splits = small_splits(Protocol(), None, 0, download=True)
    val = tasks(splits.val, 20, 1, 5, 20, 99 + 20)  # v2's validation tasks for 20-way
    sampler = NWayKShot(splits.train, 20, 1, 1)
    out = {}
    for name, lr, steps in RUNS:
        torch.manual_seed(0)
        learner = MAML(Conv4(ways=20, hidden=64, image_size=28), lr, loss=F.cross_entropy, inner_steps=steps,
                       first_order=name == "fomaml")
        began = time.process_time()
        history = mtlcode.meta_train(learner, lambda g: sampler.sample(4, generator=g), ITERATIONS, 1e-3,
                                     progress=False)
        accuracy = history["metric"]
        out[f"{name} lr={lr} steps={steps}"] = {
            "train_accuracy_per_25": [round(sum(accuracy[i:i + 25]) / 25, 3) for i in range(0, ITERATIONS, 25)],
            "val_accuracy_by_test_steps": {k: round(mtlcode.evaluate(learner, val, steps=k).mean, 3)
                                           for k in (0, steps, 5 * steps)},
            "cpu_seconds": round(time.process_time() - began)}
        print(name, lr, steps, out[f"{name} lr={lr} steps={steps}"], flush=True)
    result = {"command": "python -m benchmarks.fomaml_diagnosis", "runs": out}
    write_json(RESULTS / "fomaml_diagnosis.json", result)
    return result


if __name__ == "__main__":
    main()
