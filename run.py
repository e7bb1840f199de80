"""Compose a run from conf/ (Hydra), evaluate it, return its objective.  python run.py -m compress=lp,heuristic seg_len=8,16"""

import hydra

from xcomp.experiment.job import run
from xcomp.experiment.schema import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="run")
def main(cfg) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
