"""Numerical checks of Theorem 4.1 (the Wasserstein-gradient-flow reading of DTO).

The theorem: the KL-regularised objective ``L_PPO(rho) = -E_rho[lambda r] + KL(rho || pi)`` has a Wasserstein
gradient flow whose particle form is Langevin dynamics on the DTO loss ``L = -lambda r - log pi``, with stationary
law ``rho* ∝ pi exp(lambda r)``. The modules here hold the pieces the checks TC1-TC6 need (samplers, closed forms,
a Fokker-Planck solver, the tabular sequence space, toy models and a toy nabla-Reasoner); ``checks/`` holds the
checks themselves, shared by ``tests/theory`` (small sizes) and the ``tc*.py`` scripts here (full sizes, run as
``python -m experiments.theory.tc1_gaussian`` from the repository root).

Everything is meant to run in float64: wrap calls in ``jax.enable_x64(True)``.
"""
