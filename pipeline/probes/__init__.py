"""Probes of what a dataset lets a classifier learn besides the disease (docs/probes.md).

- `source_probes(films)`: a small CNN trained on the training split to predict each film's source from four
  views (`views`: whole film, text boxes only, lungs masked out, the COVIDx++ copy), scored on the test split
  by one-vs-rest ROC AUC per source and their mean, with patient-cluster bootstrap intervals.
- `leakage_probe(cleaned, untouched)`: can the same kind of probe tell a cleaned film from one that never
  had text (whole films; patches around the cleaned boxes)? Its AUC and its correlation with the label.
- `label_from_source(splits)`: how well the source alone predicts the label in each split.

Modules: `films` (ProbeFilm, input checks), `views` (the pictures, the blur baseline, the lung-field
estimate), `classifier` (ProbeConfig, training), `scoring` (AUCs and intervals), `source`, `leakage`,
`label_from_source`. Pure functions: no run folder is read or written here.
"""

from pipeline.probes.classifier import ProbeConfig, fit_and_score, probabilities, train_probe
from pipeline.probes.films import ProbeError, ProbeFilm, check_films, films_from_records, generator_lungs
from pipeline.probes.label_from_source import LABEL_FROM_SOURCE_COLUMNS, label_from_source, source_label_table
from pipeline.probes.leakage import CORRELATION_COLUMNS, LEAKAGE_COLUMNS, LeakageResult, leakage_probe
from pipeline.probes.scoring import AUC_COLUMNS, auc_table
from pipeline.probes.source import SOURCE_COLUMNS, SourceProbeResult, source_probes
from pipeline.probes.views import VIEWS, lung_field_mask, render_view, render_views

__all__ = [
    "AUC_COLUMNS",
    "CORRELATION_COLUMNS",
    "LABEL_FROM_SOURCE_COLUMNS",
    "LEAKAGE_COLUMNS",
    "SOURCE_COLUMNS",
    "VIEWS",
    "LeakageResult",
    "ProbeConfig",
    "ProbeError",
    "ProbeFilm",
    "SourceProbeResult",
    "auc_table",
    "check_films",
    "films_from_records",
    "fit_and_score",
    "generator_lungs",
    "label_from_source",
    "leakage_probe",
    "lung_field_mask",
    "probabilities",
    "render_view",
    "render_views",
    "source_label_table",
    "source_probes",
    "train_probe",
]
