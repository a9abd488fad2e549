"""Figures, one module per subject.

* :mod:`.tissue`: tissue classifier figures (learning curves, ROC curves, confusion heat map).
* :mod:`.overlay`: the per-slide class-grid overlay with legend (PIL, no matplotlib).
* :mod:`.mil_map`: the per-slide MIL map, bag tiles coloured by logit (PIL, no matplotlib).
* :mod:`.slide_view`: a slide thumbnail at a figure's size in level-0 coordinates, scale bar.
* :mod:`.pil_text`: font and wrapped text of the per-slide PIL figures (overlay, tissue mask).
* :mod:`.survival`: survival-analysis figures and the per-slide SOF figure.
* :mod:`.hcc`: HCC figures.
* :mod:`.colours`: the fixed tissue class colours and the MIL map's diverging map (no
  matplotlib).
"""
