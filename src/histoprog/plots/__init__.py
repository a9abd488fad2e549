"""Figures, one module per subject.

* :mod:`.tissue`: tissue classifier figures (learning curves, ROC curves, confusion heat map,
  class-grid overlay with legend).
"""
