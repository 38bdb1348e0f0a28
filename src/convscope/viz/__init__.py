"""Plots and reports: the training report (``report.html``), its figures, TensorBoard export."""

from convscope.viz.report import write_report

__all__ = ["write_report"]
