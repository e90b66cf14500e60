"""Transfer-learning recipe: model registry, ImageNet weights, training and evaluation loops."""
