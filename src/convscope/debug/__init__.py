"""Debugging ConvNets as the lecture teaches: gradient checks, per-layer monitors of gradients and
activations, sanity and loss checks (``convscope doctor``), and a diagnosis from the loss curves."""

from convscope.debug.diagnosis import Finding, diagnose, read_metrics
from convscope.debug.doctor import DoctorReport, run_doctor
from convscope.debug.gradcheck import gradcheck
from convscope.debug.monitor import Monitor, read_monitor
from convscope.debug.netcheck import layer_gradcheck, network_gradcheck
from convscope.debug.probe import NonFiniteError, Probe
from convscope.debug.rules import Thresholds

__all__ = ["DoctorReport", "Finding", "Monitor", "NonFiniteError", "Probe", "Thresholds",
           "diagnose", "gradcheck", "layer_gradcheck", "network_gradcheck", "read_metrics",
           "read_monitor", "run_doctor"]
