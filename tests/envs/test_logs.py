"""Data loaders, splits, negatives and batches, and simulated interaction logs."""

from pathlib import Path

import numpy as np
import pytest

import agents
from recsim_env.logs import (
    DataFormatError, Sequences, collect_log, infer_format, is_log, leave_last_out, load_sequences, next_item_events,
    read_log, sample_negatives, split_users, training_batches, write_log,
)
from tests.conftest import make_vec

pytest.importorskip("pyarrow")
DATA = Path(__file__).parents[1] / "data"
#: What every seqs.* fixture holds: user id -> items in time order.
TRUTH = {10: [5, 3, 7, 9], 20: [3, 5, 11], 30: [7, 7, 3], 40: [9, 5, 3, 7, 11]}


def as_dict(seqs: Sequences) -> dict[int, list[int]]:
    return {int(seqs.user_ids[u]): seqs.item_ids[seqs.user(u)].astype(int).tolist() for u in range(seqs.n_users)}


@pytest.mark.parametrize("name, fmt", [("seqs.lines.txt", "lines"), ("seqs.pairs.txt", "pairs"),
                                       ("u.data", "movielens"), ("ratings.dat", "movielens"), ("seqs.csv", "csv")])
def test_every_format_reads_the_same_sequences(name, fmt):
    seqs = load_sequences(DATA / name, fmt)
    assert as_dict(seqs) == TRUTH
    assert seqs.item_ids[1:].tolist() == [3, 5, 7, 9, 11]  # dense ids follow the original ids' order
    assert seqs.items.min() == 1 and seqs.n_items == 5


def test_parquet_table_and_format_inference(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, items = zip(*[(u, i) for u, seq in TRUTH.items() for i in seq])
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"uid": users, "iid": items}), path)
    assert as_dict(load_sequences(path, "csv", user_col="uid", item_col="iid", time_col=None)) == TRUTH
    assert infer_format(path) == "csv" and infer_format(DATA / "u.data") == "movielens"
    assert infer_format(DATA / "seqs.csv") == "csv" and infer_format(DATA / "seqs.lines.txt") == "lines"


@pytest.mark.parametrize("name, fmt, line, expected", [
    ("bad_lines_short.txt", "lines", 3, "a user and at least one item"),
    ("bad_lines_token.txt", "lines", 3, "integer ids"),
    ("bad_lines_duplicate_user.txt", "lines", 3, "already on line 1"),
    ("bad_pairs.txt", "pairs", 3, "'user item'"),
    ("bad_u.data", "movielens", 3, "four integers"),
    ("bad_fields.csv", "csv", 3, "as many fields as the header"),
    ("bad_columns.csv", "csv", 1, "columns"),
    ("bad_time.csv", "csv", 3, "a time in column 'time'"),
])
def test_malformed_files_name_file_line_and_expectation(name, fmt, line, expected):
    with pytest.raises(DataFormatError) as err:
        load_sequences(DATA / name, fmt)
    message = str(err.value)
    assert name in message and f"line {line}:" in message and expected in message
    assert err.value.line == line


def test_missing_file_and_unknown_format():
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_sequences(DATA / "nope.txt")
    with pytest.raises(ValueError, match="format='json'"):
        load_sequences(DATA / "seqs.lines.txt", "json")


def test_kcore_repeats_until_stable():
    # user 4 has one item -> goes; item 9 is then seen once -> goes; user 3 keeps one item -> goes
    seqs = Sequences.from_interactions(np.array([1, 1, 1, 2, 2, 2, 3, 3, 4]), np.array([7, 8, 5, 7, 8, 5, 9, 7, 9]))
    core = seqs.kcore(2)
    assert as_dict(core) == {1: [7, 8, 5], 2: [7, 8, 5]}
    assert core.item_ids[1:].tolist() == [5, 7, 8] and core.items.max() == core.n_items == 3  # compacted
    assert as_dict(seqs.kcore(2, k_item=1)) == {1: [7, 8, 5], 2: [7, 8, 5], 3: [9, 7]}


def test_kcore_that_leaves_nothing_is_an_error():
    # by hand: at k=3 items 9 and 11 go, then user 20, then item 5, then users 10 and 40, then all
    with pytest.raises(ValueError, match="no interactions left after the 3-core"):
        load_sequences(DATA / "seqs.lines.txt", kcore=3)
    assert as_dict(load_sequences(DATA / "seqs.lines.txt", kcore=2)) == TRUTH


def test_leave_last_out():
    seqs = load_sequences(DATA / "seqs.lines.txt")
    split = leave_last_out(seqs)
    ids = seqs.item_ids
    assert as_dict(split.train) == {10: [5, 3], 20: [3], 30: [7], 40: [9, 5, 3]}
    assert ids[split.valid.targets].tolist() == [7, 5, 7, 7]
    assert ids[split.test.targets].tolist() == [9, 11, 3, 11]
    assert as_dict(split.test.history) == {10: [5, 3, 7], 20: [3, 5], 30: [7, 7], 40: [9, 5, 3, 7]}
    assert split.valid.users.tolist() == [0, 1, 2, 3]
    short = Sequences.from_interactions(np.array([1, 1, 2, 2, 2]), np.array([1, 2, 3, 4, 5]))
    split = leave_last_out(short)  # user 1 has 2 items: training only
    assert len(split.test) == 1 and split.train.lengths.tolist() == [2, 1]


def test_padding_keeps_the_last_items_right_padded():
    seqs = load_sequences(DATA / "seqs.lines.txt")
    items, lengths = seqs.pad(np.array([3, 1]), max_len=3)
    assert lengths.tolist() == [3, 3]
    assert seqs.item_ids[items[0]].tolist() == [3, 7, 11]
    items, lengths = seqs.pad(np.array([1, 2]), max_len=10)
    assert items.shape == (2, 3) and lengths.tolist() == [3, 3]
    items, lengths = Sequences.from_interactions(np.array([1, 1, 2]), np.array([4, 5, 6])).pad(max_len=5)
    assert items.tolist() == [[1, 2], [3, 0]]


def test_training_batches_shift_targets_and_cover_every_user_once():
    seqs = load_sequences(DATA / "seqs.lines.txt")
    batches = list(training_batches(seqs, batch_size=3, max_len=3, rng=np.random.default_rng(0)))
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == [0, 1, 2, 3]
    for b in batches:
        for r, row in enumerate(b.rows):
            seq = seqs.user(row)[-4:]  # last max_len + 1 items
            n = len(seq) - 1
            assert b.inputs[r, :n].tolist() == seq[:-1].tolist()
            assert b.targets[r, :n].tolist() == seq[1:].tolist() and (b.targets[r, n:] == 0).all()
            assert b.lengths[r] == n


def test_next_item_events_and_user_holdout():
    seqs = load_sequences(DATA / "seqs.lines.txt")
    events = next_item_events(seqs)
    assert len(events) == len(seqs) - seqs.n_users and (events.users == -1).all()
    first = as_dict(events.history)  # later cases of a user overwrite: the longest history is kept
    assert first[40] == [9, 5, 3, 7] and seqs.item_ids[events.targets[-1]] == 11
    train, test = split_users(seqs, 0.5, np.random.default_rng(0))
    assert train.n_users == test.n_users == 2
    assert set(train.user_ids) | set(test.user_ids) == set(TRUTH) and not set(train.user_ids) & set(test.user_ids)


def test_negatives_are_distinct_untouched_seeded_and_uniform():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 5)
    items = rng.integers(1, 41, size=len(users))
    seqs = Sequences.from_interactions(users, items)
    neg = sample_negatives(seqs, 20, np.random.default_rng(1))
    assert neg.shape == (300, 20)
    for u in range(300):
        assert len(set(neg[u])) == 20 and not set(neg[u]) & set(seqs.user(u))
    np.testing.assert_array_equal(neg, sample_negatives(seqs, 20, np.random.default_rng(1)))
    # uniform over allowed items: each item's draw count is close to its number of allowed users * 20 / room
    allowed = np.ones((300, seqs.n_items + 1), bool)
    allowed[:, 0] = False
    allowed[seqs.row_of_each(), seqs.items] = False
    expected = (allowed * (20 / allowed.sum(1, keepdims=True))).sum(0)[1:]
    counts = np.bincount(neg.ravel(), minlength=seqs.n_items + 1)[1:]
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max())
    with pytest.raises(ValueError, match="cannot draw 99 negatives"):
        sample_negatives(seqs, 99, rng)


@pytest.fixture(scope="module")
def myopic_log():
    env = make_vec(num_envs=16, n_items=200)
    return collect_log(env, agents.make("myopic", env), n_users=40, seed=3, policy_name="myopic")


def test_collected_log_holds_whole_episodes_without_reset_steps(myopic_log):
    log = myopic_log
    assert sorted(set(log.user.tolist())) == list(range(40))
    for u in range(40):
        steps = log.step[log.user == u]
        assert steps.tolist() == list(range(len(steps)))  # no gaps: reset steps skipped
    clicked = log.click
    assert (log.item[~clicked] == -1).all() and (log.item[clicked] >= 0).all()
    assert (log.slate[clicked, 0] == log.item[clicked]).all()  # one item shown: it is the click
    assert (log.candidates == log.slate[:, :1]).any(axis=1).all()  # shown item was a candidate
    assert log.candidates.shape[1] == 10
    assert log.metadata["seed"] == 3 and log.metadata["policy"] == "myopic"
    assert log.metadata["config"]["catalog"]["n_items"] == 200
    assert log.metadata["env_id"] == "recsim_env/InterestDrift-v0"


def test_collection_is_seeded(myopic_log):
    env = make_vec(num_envs=16, n_items=200)
    again = collect_log(env, agents.make("myopic", env), n_users=40, seed=3)
    np.testing.assert_array_equal(again.item, myopic_log.item)
    np.testing.assert_array_equal(again.candidates, myopic_log.candidates)


def test_log_round_trips_through_parquet(myopic_log, tmp_path):
    path = write_log(tmp_path / "log.parquet", myopic_log)
    assert is_log(path) and infer_format(path) == "log"
    back = read_log(path)
    for name in ("user", "step", "session", "item", "click", "candidates", "slate"):
        np.testing.assert_array_equal(getattr(back, name), getattr(myopic_log, name))
    np.testing.assert_allclose(back.engagement, myopic_log.engagement, rtol=1e-6)
    assert back.metadata == myopic_log.metadata
    seqs = load_sequences(path)
    assert len(seqs) == myopic_log.click.sum()
    assert seqs.item_ids[seqs.user(0)].tolist() == myopic_log.item[(myopic_log.user == 0) & myopic_log.click].tolist()
    assert not list(tmp_path.glob(".*"))  # atomic write left no temporary file
    with pytest.raises(ValueError, match="not a recsim_env interaction log"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"user": [1]}), tmp_path / "other.parquet")
        read_log(tmp_path / "other.parquet")


def test_collect_log_refuses_bad_counts():
    env = make_vec(num_envs=4)
    with pytest.raises(ValueError, match="n_users"):
        collect_log(env, agents.make("random", env), n_users=0, seed=0)
    with pytest.raises(RuntimeError, match="had not finished"):
        collect_log(env, agents.make("random", env), n_users=4, seed=0, max_steps=2)


def test_a_log_sized_in_user_steps_holds_whole_episodes_up_to_the_budget():
    env = make_vec(num_envs=64)
    log = collect_log(env, agents.make("myopic", env), None, seed=4, n_steps=3_000)
    lengths = np.bincount(log.user)
    assert len(log) <= 3_000 < len(log) + 40  # the next user's episode would not have fitted (myopic: ~16 steps)
    assert log.metadata["n_users"] == len(lengths) and np.all(lengths > 0)
    by_users = collect_log(env, agents.make("myopic", env), len(lengths), seed=4)
    assert np.array_equal(by_users.item, log.item)  # the same users, in the same order
    with pytest.raises(ValueError, match="exactly one"):
        collect_log(env, agents.make("myopic", env), 10, seed=4, n_steps=100)
