"""Model fitting: morphable-model pose, identity and expression from 2D landmarks."""
