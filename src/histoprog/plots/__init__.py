"""Figures, one module per subject.

* :mod:`.tissue`: tissue classifier figures (learning curves, ROC curves, confusion heat map).
* :mod:`.overlay`: the per-slide class-grid overlay with legend (PIL, no matplotlib).
* :mod:`.pil_text`: font and wrapped text of the per-slide PIL figures (overlay, tissue mask).
* :mod:`.survival`: survival-analysis figures and the per-slide SOF figure.
* :mod:`.hcc`: HCC figures.
* :mod:`.colours`: the fixed tissue class colours the figures share (no matplotlib).
"""
