"""Per-cohort analyses on spatial features and clinical tables (METHODS section 5).

Inputs:

* :mod:`.features`: ``sof.tsv`` assembly from per-slide records; reading and checking
  feature tables (``sof.tsv`` or a user's per-patient table) and clinical tables, joined
  per patient with every excluded patient recorded.
* :mod:`.crs`: the Fong clinical risk score and the combined SOF + CRS grading.

Cohort steps, on any table with a time/event :class:`.outcome.Outcome` (each written once
on top of :mod:`histoprog.survival`, used by the CRLM and the HCC analyses):

* :mod:`.outcome`: the outcome columns and the follow-up horizon.
* :mod:`.cutpoints`: maxstat cutpoints of features and the features dichotomised at them.
* :mod:`.cox_tables`: clinical factor coding, univariate Cox tables, multivariable models.
* :mod:`.groups`: KM, log-rank and Cox HR of patient groups.
* :mod:`.roc_tables`: time-dependent AUC tables and paired comparisons.
* :mod:`.calibration_table`: bootstrap-corrected calibration at several times.
* :mod:`.cutoff`: the published risk-score cutoff scan.
* :mod:`.descriptives`: Table 1, reverse Kaplan-Meier follow-up, associations.

The CRLM analysis: :mod:`.crlm_settings` (config ``crlm.*``), :mod:`.crlm_model` (feature
selection, risk score and cutoff on the discovery cohort, scoring of every cohort) and
:mod:`.crlm` (:func:`.crlm.run_crlm`, every cohort's tables). The HCC analysis is
:mod:`histoprog.hcc.analysis`.
"""
