"""replicate: reproduce figures and claims of RL-for-reasoning papers at the scale your hardware allows."""
__version__ = "0.1.0"
