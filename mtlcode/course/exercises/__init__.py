"""Checks for the book's coding exercises.

Each ``check_*`` function takes *your* function, runs it on small inputs drawn with a fixed seed,
runs the reference implementation from ``mtlcode`` on the same inputs, and compares the two in
float64, so that a correct answer agrees to rounding error. It prints one line per case. The
first case that fails prints what was expected, what your function returned and a hint, then
raises ``AssertionError``, so a notebook run stops at a wrong answer. A function that still
raises ``NotImplementedError`` (an exercise not done yet) is let through unchanged.

Every check is a small function in the module of its chapter: ``background`` (1), ``concepts``
(2), ``algorithms`` and ``family`` (3), ``mathematics`` (4), ``practice`` (5), ``applications``
(6), ``tools`` (7), ``summary`` (8), ``faq`` (9); the helpers they share are in ``_checking``.
Read a check to see exactly what is tested. Checks draw
their random numbers inside ``torch.random.fork_rng``: calling one does not change the random
numbers of the notebook around it.
"""

from __future__ import annotations

from mtlcode.course.exercises.algorithms import check_first_order_meta_gradient, check_inner_loop, check_meta_gradient
from mtlcode.course.exercises.applications import check_discounted_returns, check_policy_gradients
from mtlcode.course.exercises.background import check_gradient_descent, check_task_mse
from mtlcode.course.exercises.concepts import check_average_sinusoid, check_nway_kshot
from mtlcode.course.exercises.family import (
    check_anil_inner_loop,
    check_metasgd_step,
    check_prototype_logits,
    check_reptile_update,
)
from mtlcode.course.exercises.faq import check_batch_norm, check_second_order_term
from mtlcode.course.exercises.mathematics import check_linear_maml_optimum
from mtlcode.course.exercises.practice import check_finetune_head, check_linear_cka
from mtlcode.course.exercises.summary import (
    check_lora_linear,
    check_paired_difference,
    check_prototype_linear_layer,
    check_ridge_head,
)
from mtlcode.course.exercises.tools import check_batched_inner_step, check_per_example_gradients

__all__ = [
    "check_anil_inner_loop",
    "check_average_sinusoid",
    "check_batch_norm",
    "check_batched_inner_step",
    "check_discounted_returns",
    "check_finetune_head",
    "check_first_order_meta_gradient",
    "check_gradient_descent",
    "check_inner_loop",
    "check_linear_cka",
    "check_linear_maml_optimum",
    "check_lora_linear",
    "check_meta_gradient",
    "check_metasgd_step",
    "check_nway_kshot",
    "check_paired_difference",
    "check_per_example_gradients",
    "check_policy_gradients",
    "check_prototype_linear_layer",
    "check_prototype_logits",
    "check_reptile_update",
    "check_ridge_head",
    "check_second_order_term",
    "check_task_mse",
]
