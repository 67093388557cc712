"""Interaction data for sequential recommenders: simulated logs, real-data loaders, splits, batches.

``sequences`` holds the data structure and the protocols (leave-last-out, held-out users, sampled
negatives, padded batches); ``loaders`` reads real data files (``obd`` the Open Bandit Dataset's logged bandit feedback); ``simulated`` records a behaviour
policy in the simulator and stores the log as Parquet. pyarrow is needed only for Parquet and CSV.
"""

from recsim_env.logs.loaders import FORMATS, DataFormatError, infer_format, load_sequences
from recsim_env.logs.obd import ObdLog, per_impression, read_obd, to_propensity_log
from recsim_env.logs.propensity import PropensityLog, collect_propensity_log, read_propensity_log, write_propensity_log
from recsim_env.logs.sequences import (
    PAD, EvalSet, Sequences, Split, TrainingBatch, holdout_split, leave_last_out, next_item_events, sample_negatives,
    split_users, training_batches,
)
from recsim_env.logs.simulated import InteractionLog, collect_log, is_log, read_log, write_log
from recsim_env.logs.steps import LoggedSteps, collect_steps

__all__ = [
    "FORMATS", "PAD", "DataFormatError", "EvalSet", "InteractionLog", "LoggedSteps", "ObdLog", "PropensityLog", "Sequences", "Split", "TrainingBatch",
    "collect_log", "collect_propensity_log", "collect_steps", "holdout_split", "infer_format", "is_log", "leave_last_out", "load_sequences", "next_item_events", "per_impression", "read_log", "read_obd",
    "read_propensity_log", "sample_negatives", "split_users", "to_propensity_log", "training_batches", "write_log", "write_propensity_log",
]
