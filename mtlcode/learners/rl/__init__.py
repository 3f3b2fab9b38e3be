"""Meta-reinforcement learning with MAML on the 2D navigation task (Finn et al., 2017, section 5.3).

A point agent starts at the origin of the plane and must reach a goal drawn uniformly from
``[-0.5, 0.5]^2``. It observes its position, its action is a velocity clipped to
``[-0.1, 0.1]`` per coordinate, and its reward at every step is minus its distance to the goal.
The goal is the task: the agent never sees it and must infer it from the rewards.

Everything is a tensor shaped ``[tasks, episodes, ...]``: the environment steps all episodes of
all tasks at once, and the policy runs with a different parameter set per task through
``torch.func.vmap`` and ``functional_call``. The pieces:

* :class:`PointNavigation` and :func:`rollout` sample trajectories;
* :class:`GaussianPolicy`: an MLP for the mean action and a learned, state-independent log std;
* :func:`reinforce_loss` (Williams, 1992) with a linear feature baseline (:func:`advantages`);
* :func:`adapt`: one policy-gradient step per task, the MAML inner loop;
* :class:`NavigationMAML`, the learner that :func:`mtlcode.meta_train` trains, like every
  other learner (checkpoints, progress bar and NaN check included), wrapped by
  :func:`meta_train_navigation`; and :func:`evaluate_navigation`.

Sampling actions is not differentiable, so both losses are *surrogates*: ``-mean(log pi(a|s) * A)``
on trajectories whose actions and advantages are constants. The inner step differentiates the
surrogate of trajectories sampled with ``theta``; the outer loss is the surrogate of trajectories
sampled with the adapted ``theta'``, differentiated through ``theta'`` back to ``theta`` (second
order by default). As in the MAML paper, the meta-gradient ignores how ``theta`` changes the
*distribution* of the pre-update trajectories (estimators such as DiCE and ProMP add that term).
The paper's outer optimiser is TRPO; here it is plain Adam on the policy-gradient surrogate.
"""

# One job per module: ``environment`` (the task, the policy, sampling), ``policy_gradient``
# (returns, baseline, advantages, the REINFORCE loss, the inner step ``adapt``) and
# ``navigation_maml`` (the learner, its training and evaluation). The names are re-exported
# here, so ``from mtlcode.learners.rl import adapt`` works as before the split.

from __future__ import annotations

from mtlcode.learners.rl.environment import GaussianPolicy, PointNavigation, Trajectories, log_prob, rollout
from mtlcode.learners.rl.navigation_maml import (
    NavigationEvaluation,
    NavigationMAML,
    NavigationTasks,
    evaluate_navigation,
    meta_train_navigation,
)
from mtlcode.learners.rl.policy_gradient import (
    adapt,
    advantages,
    discounted_returns,
    linear_baseline,
    reinforce_loss,
)

__all__ = [
    "GaussianPolicy",
    "NavigationEvaluation",
    "NavigationMAML",
    "NavigationTasks",
    "PointNavigation",
    "Trajectories",
    "adapt",
    "advantages",
    "discounted_returns",
    "evaluate_navigation",
    "linear_baseline",
    "log_prob",
    "meta_train_navigation",
    "reinforce_loss",
    "rollout",
]
