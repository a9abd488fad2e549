"""Per-cohort analyses on spatial features and clinical tables (METHODS section 5).

Modules (one concern each):

* :mod:`.features`: ``sof.tsv`` assembly from per-slide records; reading and checking
  feature tables (``sof.tsv`` or a user's per-patient table) and clinical tables, joined
  per patient with every excluded patient recorded.
* :mod:`.crs`: the Fong clinical risk score and the combined SOF + CRS grading.
* :mod:`.crlm`: the CRLM survival analysis, step by step, as functions returning
  DataFrames and small dataclasses.
* :mod:`.descriptives`: Table 1, reverse Kaplan-Meier follow-up, clinical associations.
"""
