"""Our differentiable rasterizer in JAX (nvdiffrast-shaped) and UV-space operations."""
