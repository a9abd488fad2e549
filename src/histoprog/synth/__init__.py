"""Synthetic cohorts with planted truth, for the demo and the tests (``histoprog synth``).

Modules, one concern each:

* :mod:`~histoprog.synth.seeding`: deterministic random streams per purpose and patient;
* :mod:`~histoprog.synth.layout`: latent parameters -> tissue-class grid;
* :mod:`~histoprog.synth.nuclei`: nuclei as irregular ellipses with masks;
* :mod:`~histoprog.synth.texture`: per-class H/E concentration textures;
* :mod:`~histoprog.synth.stain`: Beer-Lambert staining with per-slide stain vectors;
* :mod:`~histoprog.synth.render`: grid + textures -> slide pixels, streamed per level;
* :mod:`~histoprog.synth.slide_writer`: Aperio-style SVS and generic pyramidal TIFF;
* :mod:`~histoprog.synth.large`: one very large slide with bounded memory;
* :mod:`~histoprog.synth.clinical`: clinical variables and planted survival models;
* :mod:`~histoprog.synth.spec`: cohort spec (YAML) validation;
* :mod:`~histoprog.synth.cohort`: a whole cohort with its truth files;
* :mod:`~histoprog.synth.patches`: labelled patch folders (ImageFolder);
* :mod:`~histoprog.synth.nuclei_pairs`: nucleus image/mask pairs (MoNuSeg layout).
"""
