"""Debugging ConvNets as the lecture teaches: gradient checks (and, to come, monitors and sanity checks)."""

from convscope.debug.gradcheck import gradcheck

__all__ = ["gradcheck"]
