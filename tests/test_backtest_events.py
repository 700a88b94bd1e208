"""jaxmm.backtest events: schema, validator rules, repair rules, CSV/Parquet loader."""

import numpy as np
import pandas as pd
import pytest

from jaxmm.backtest import (
    EVENT_COLUMNS,
    EVENT_DTYPE,
    EventKind,
    events_from_frame,
    events_to_frame,
    load_events,
    make_events,
    poisson_l2_stream,
    repair_events,
    save_events,
    validate_events,
)

T, D, A, C, M = (
    EventKind.TRADE,
    EventKind.DEPTH,
    EventKind.ADD,
    EventKind.CANCEL,
    EventKind.MODIFY,
)


def rules(ev):
    return [tuple(r) for r in validate_events(ev)[["row", "rule"]].values.tolist()]


def test_schema_is_fixed():
    assert EVENT_COLUMNS == (
        "exchange_ts",
        "local_ts",
        "seq",
        "kind",
        "side",
        "price",
        "qty",
        "order_id",
    )
    assert EVENT_DTYPE["exchange_ts"] == np.int64 and EVENT_DTYPE["kind"] == np.int8


def test_make_events_rejects_bad_columns():
    with pytest.raises(ValueError, match="price: must hold integers"):
        make_events([0], [D], [0], [99.5], [1])
    with pytest.raises(ValueError, match="qty: must hold integers"):
        make_events([0], [D], [0], [99], ["1"])
    with pytest.raises(ValueError, match="side: length 2 differs"):
        make_events([0], [D], [0, 1], [99], [1])
    with pytest.raises(ValueError, match="kind: values must fit int8"):
        make_events([0], [300], [0], [99], [1])


def test_clean_stream_has_no_issues():
    ev = make_events([0, 0, 5, 5], [D, D, T, D], [0, 1, 1, 0], [99, 101, 99, 99], [5, 5, 2, 3])
    assert validate_events(ev).empty


def test_out_of_order_exchange_ts():
    ev = make_events([0, 10, 5, 20], [D] * 4, [0, 0, 0, 0], [99, 98, 97, 96], [1, 1, 1, 1])
    assert rules(ev) == [(2, "exchange_ts_order")]


def test_negative_feed_latency():
    ev = make_events([0, 10], [D, D], [0, 1], [99, 101], [1, 1], local_ts=[0, 9])
    assert rules(ev) == [(1, "negative_latency")]


def test_duplicate_sequence_number():
    ev = make_events([0, 1, 2], [D] * 3, [0, 1, 0], [99, 101, 98], [1, 1, 1], seq=[7, 8, 7])
    assert rules(ev) == [(2, "duplicate_seq")]


def test_crossed_book_after_an_update_reported_once_per_episode():
    # bid 99 / ask 101; an ask at 99 crosses (row 2), stays crossed (row 3, not reported
    # again), is uncrossed by removing it (row 4), then a bid at 101 crosses again (row 5).
    ev = make_events(
        [0, 0, 1, 2, 3, 4],
        [D] * 6,
        [0, 1, 1, 1, 1, 0],
        [99, 101, 99, 100, 99, 101],
        [1, 1, 1, 1, 0, 1],
    )
    assert rules(ev) == [(2, "crossed_book"), (5, "crossed_book")]


def test_bad_fields_and_unknown_l3_orders():
    ev = make_events(
        [0, 1, 2, 3, 4, 5, 6],
        [9, D, T, A, A, C, M],
        [0, 2, 0, 0, 0, 0, 0],
        [99, 99, 99, 99, 98, 0, 97],
        [1, 1, 0, 1, 1, 0, 1],
        order_id=[0, 0, 0, 1, 1, 2, 3],
    )
    assert rules(ev) == [
        (0, "field"),
        (1, "field"),
        (2, "field"),
        (4, "unknown_order"),
        (5, "unknown_order"),
        (6, "unknown_order"),
    ]


def test_l3_crossed_book_uses_the_orders():
    ev = make_events([0, 1, 2], [A, A, M], [0, 1, 1], [99, 101, 99], [2, 2, 2], order_id=[1, 2, 2])
    assert rules(ev) == [(2, "crossed_book")]


def test_repair_restores_a_shuffled_dirty_stream():
    clean = poisson_l2_stream(300, seed=4)
    clean["local_ts"] += 1_000
    rng = np.random.default_rng(0)
    dirty = clean[rng.permutation(len(clean))]
    dirty["local_ts"][:5] = dirty["exchange_ts"][:5] - 3  # negative feed latency
    neg_seqs = dirty["seq"][:5].copy()
    other = dirty[10:12].copy()
    other["qty"] += 1  # same seq, different content: the later row is dropped
    dirty = np.concatenate([dirty, dirty[:7], other])  # 7 exact duplicates
    found = set(validate_events(dirty)["rule"])
    assert {"exchange_ts_order", "negative_latency", "duplicate_seq"} <= found
    fixed, counts = repair_events(dirty)
    assert counts["duplicates_dropped"] == 7
    assert counts["duplicate_seq_dropped"] == 2
    assert counts["local_ts_clamped"] == 5
    assert np.all(np.diff(fixed["exchange_ts"]) >= 0)
    assert validate_events(fixed).empty
    # expected: the clean stream with the 5 negative latencies clamped to zero; rows with
    # equal exchange_ts keep their (shuffled) input order, so compare sorted by (ts, seq)
    expect = clean.copy()
    hit = np.isin(expect["seq"], neg_seqs)
    expect["local_ts"][hit] = expect["exchange_ts"][hit]
    key = ["exchange_ts", "seq"]
    assert np.array_equal(np.sort(fixed, order=key), np.sort(expect, order=key))


def test_repair_sort_is_stable():
    ev = make_events([5, 3, 5, 3], [D] * 4, [0, 0, 1, 1], [90, 91, 110, 111], [1, 2, 3, 4])
    fixed, counts = repair_events(ev)
    assert fixed["price"].tolist() == [91, 111, 90, 110]
    assert counts["reordered"] == 4


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_loader_round_trip(tmp_path, suffix):
    ev = poisson_l2_stream(400, seed=1, feed_latency_ns=2_500)
    ev["order_id"][::3] = 77
    path = save_events(ev, tmp_path / f"events{suffix}")
    back = load_events(path)
    assert back.dtype == EVENT_DTYPE
    assert np.array_equal(back, ev)


def test_loader_names_the_missing_column(tmp_path):
    df = events_to_frame(poisson_l2_stream(10, seed=0)).drop(columns=["local_ts"])
    df.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match="missing column 'local_ts'"):
        load_events(tmp_path / "x.csv")


def test_loader_names_the_badly_typed_column(tmp_path):
    df = events_to_frame(poisson_l2_stream(10, seed=0))
    df["price"] = df["price"].astype(str) + "x"
    df.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="column 'price' must hold integers"):
        load_events(tmp_path / "x.parquet")
    df = events_to_frame(poisson_l2_stream(10, seed=0)).astype({"qty": float})
    df.loc[3, "qty"] = 1.5
    with pytest.raises(ValueError, match="column 'qty' must hold integers, got fractions"):
        events_from_frame(df)
    df.loc[3, "qty"] = np.nan
    with pytest.raises(ValueError, match="column 'qty' has missing values"):
        events_from_frame(df)


def test_loader_accepts_kind_names_and_rejects_unknown_ones():
    base = {
        "exchange_ts": [1, 2],
        "local_ts": [1, 2],
        "seq": [0, 1],
        "side": [0, 1],
        "price": [99, 99],
        "qty": [1, 1],
        "order_id": [0, 0],
    }
    ok = events_from_frame(pd.DataFrame({**base, "kind": ["DEPTH", "trade"]}))
    assert ok["kind"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="unknown kind 'bogus'"):
        events_from_frame(pd.DataFrame({**base, "kind": ["depth", "bogus"]}))


def test_loader_format_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot infer the format"):
        save_events(poisson_l2_stream(5, seed=0), tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_events(tmp_path / "none.csv")
