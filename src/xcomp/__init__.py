"""xcomp: XComp (LP-Comp + QC-Comp) for long-video understanding."""

__version__ = "0.1.0"
