"""The privacy–utility study: a grid of methods × ε × seeds (``secure-mor experiment``)."""
