"""Converters from the public PyTorch checkpoints (state-dict names) to Flax parameters.

Nothing is ever downloaded: every converter takes a path the user gives. Reading a ``.pth`` / ``.pt``
needs PyTorch (``pip install torch``); ``.npz`` and ``.safetensors``-free numpy archives do not.
"""
