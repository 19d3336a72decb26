"""nabla-jax: the nabla-Reasoner (test-time gradient descent over token logits) in JAX."""
