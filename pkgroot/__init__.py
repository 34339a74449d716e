"""pddgpu-verify: model checker for the PDDGPU memory-manager protocol."""
__version__ = "0.1.0"
