"""The HCC branch (METHODS 6): nuclei U-net, heat-map bags, MIL slide score, RFS analysis.

* :mod:`.nuclei_data`: nucleus image/mask pairs, seeded split, random crops at the tiles' scale.
* :mod:`.unet`: U-net training (Dice loss, best validation Dice) and heat-map inference.
* :mod:`.bags`: a slide's bag (tiles, Vahadane, heat maps) in one ``.npz``; 4-channel input.
* :mod:`.qc`: the nuclei QC montage (PIL).
* :mod:`.labels`: good/poor training labels from the clinical table.
* :mod:`.mil`: MIL training (one bag per step, Eq. 3-4 loss) and slide scoring.
* :mod:`.analysis`: KM, Cox, time-dependent AUC and stratified KM of the MIL groups.
"""
