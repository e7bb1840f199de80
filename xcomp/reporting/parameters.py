"""What a report notebook is given: the papermill parameters every notebook in notebooks/ declares in its
`parameters` cell, under these names and with these defaults (tests/test_report.py reads each notebook's cell and
compares). A notebook that does not use one says so in its comment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReportParameters:
    """A report notebook's parameters."""

    tracking_uri: str = "sqlite:///mlflow.db"
    """MLflow store holding the sweep."""
    experiment: str = "xcomp"
    """MLflow experiment name."""
    sweep: str = ""
    """The sweep's (or search's) parent run id."""
    title: str = "Sweep report"
    """Heading of the report (`ReportConfig.title`)."""
    command: str = ""
    """The command that made the sweep."""
    claims: str = "[]"
    """JSON list of the experiment's claims (`ReportConfig.claims`: `xcomp.reporting.verdict.Claim` fields)."""
    chance: float = 0.25
    """Accuracy of guessing (four options per question)."""
    cost: str = "token_layers_ratio"
    """Cost metric of the accuracy-vs-cost plot and its Pareto front (`ReportConfig.cost`)."""
    numbers: str = "[]"
    """JSON list of logged config values to draw accuracy curves over (`ReportConfig.numbers`)."""
    rerun_of: str = ""
    """The report this sweep repeats (`ReportConfig.rerun_of`), "" for none."""
    original: str = ""
    """That report's sweep (parent run id), whose arms are compared with these."""
    reference: int = 0
    """A search's reference trial (the sweeper's first enqueued parameters)."""
    output_dir: str = "."
    """Where report.md and its PNGs go."""
