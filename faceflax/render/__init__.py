"""Our differentiable rasterizer in JAX (nvdiffrast-shaped) and UV-space operations."""

from faceflax.render.interpolate import interpolate, texture
from faceflax.render.rasterizer import Fragments, rasterize

__all__ = ["Fragments", "interpolate", "rasterize", "texture"]
