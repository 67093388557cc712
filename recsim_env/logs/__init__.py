"""Interaction data for sequential recommenders: simulated logs, real-data loaders, splits, batches.

``sequences`` holds the data structure and the protocols (leave-last-out, held-out users, sampled
negatives, padded batches); ``loaders`` reads real data files (``obd`` the Open Bandit Dataset's logged bandit feedback); ``propensity`` and ``slate_log`` keep the behaviour probabilities off-policy evaluation needs (``minari_export`` writes them as Minari datasets); ``simulated`` records a behaviour
policy in the simulator and stores the log as Parquet. pyarrow is needed only for Parquet and CSV.
"""

from recsim_env.logs.loaders import FORMATS, DataFormatError, infer_format, load_sequences
from recsim_env.logs.minari_export import to_minari
from recsim_env.logs.obd import ObdLog, per_impression, read_obd, to_propensity_log
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log, read_propensity_log, write_propensity_log
from recsim_env.logs.sequences import (
    PAD,
    EvalSet,
    Sequences,
    Split,
    TrainingBatch,
    holdout_split,
    leave_last_out,
    next_item_events,
    sample_negatives,
    split_users,
    training_batches,
)
from recsim_env.logs.simulated import InteractionLog, collect_log, is_log, read_log, write_log
from recsim_env.logs.slate_log import SlateLog, collect_slate_log, read_slate_log, write_slate_log
from recsim_env.logs.steps import LoggedSteps, collect_steps, steps_from_log

__all__ = [
    "FORMATS", "PAD", "DataFormatError", "EvalSet", "InteractionLog", "LoggedSteps", "ObdLog", "PropensityLog", "Sequences", "SlateLog", "Split", "TrainingBatch",
    "collect_log", "collect_propensity_log", "collect_slate_log", "collect_steps", "holdout_split", "infer_format", "is_log", "leave_last_out", "load_sequences", "next_item_events", "per_impression", "read_log", "read_obd",
    "read_propensity_log", "read_slate_log", "sample_negatives", "split_users", "steps_from_log", "to_minari", "to_propensity_log", "training_batches", "write_log", "write_propensity_log", "write_slate_log",
]
