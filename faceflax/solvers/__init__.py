"""Sparse solvers in JAX: matrix-free PCG, image Poisson blending, screened Poisson on meshes."""
