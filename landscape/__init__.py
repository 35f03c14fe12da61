"""landscape: loss-landscape surfaces of trained PyTorch networks (Li et al. 2018 and beyond)."""

__version__ = "0.1.0"
