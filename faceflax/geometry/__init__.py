"""3D face geometry: morphable models, cameras, rotations, lighting, mesh normals."""
