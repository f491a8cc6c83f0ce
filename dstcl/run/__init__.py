"""The life of one run: build it, train and evaluate it, checkpoint and resume it, write its folder.

* :mod:`.experiment` — one run end to end (``run_experiment``, ``resume_experiment``);
* :mod:`.matrix` — the accuracy matrix and what is evaluated when;
* :mod:`.rundir` — the run folder: the one owner of its file names, status and lock;
* :mod:`.reuse` — a folder that already holds a run: resume, done, or refuse;
* :mod:`.checkpoint` — background atomic checkpoints;
* :mod:`.hashing` — the run's identity (used by sweeps and reports);
* :mod:`.environment` — device, threads, RNG states, versions;
* :mod:`.summary` — ``summary.md`` and the final table;
* :mod:`.tensorboard` — an optional event subscriber.
"""

from .experiment import Experiment, RunResult, resume_experiment, run_experiment
from .hashing import config_hash
from .rundir import RunDir, load_mask, run_status

__all__ = ["Experiment", "RunDir", "RunResult", "config_hash", "load_mask", "resume_experiment", "run_experiment",
           "run_status"]
