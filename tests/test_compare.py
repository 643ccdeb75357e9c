"""Hardware comparison: options ranked by cost under the SLOs, options that do not fit listed
with the reason, profile families never mixed silently, and bad input refused in one line."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from sim import load_scenario
from sim.analysis.compare import CompareError, compare
from tests.helpers import SMALL_CHAT, run_app

# Llama-3.1-8B, short chat-like requests: each load-curve point is a few hundred requests.
BASE = SMALL_CHAT


@pytest.fixture(scope="module")
def comparison():
    return compare(load_scenario(BASE), hardware=["h100-sxm", "l4"], quantization=["bf16"], tp=[1],
                   rate_per_s=20.0, seeds=1, workers=1)


def test_options_are_ranked_by_cost_under_the_slos(comparison):
    rows = comparison.options.to_pylist()
    assert [r["option"] for r in rows] and all(r["fits"] for r in rows)
    meeting = [r for r in rows if r["meets_slo"]]
    assert meeting, rows
    costs = [r["usd_per_million_output_tokens"] for r in meeting]
    assert costs == sorted(costs)
    for r in meeting:
        # $ per 1M output tokens at the highest rate under the SLOs, from the replica's price.
        assert r["usd_per_million_output_tokens"] == pytest.approx(
            r["usd_per_hour_per_replica"] / (r["output_tokens_per_s_per_replica"] * 3600) * 1e6, rel=1e-12)
        assert r["replicas_needed"] == max(1, math.ceil(20.0 / r["max_rate_per_replica_per_s"] - 1e-9))
        assert r["max_rate_min_per_s"] <= r["max_rate_per_replica_per_s"] <= r["max_rate_max_per_s"]
        assert r["profile_kind"] == "derived" and "roofline" in r["profile_source"]
        parts = [r[f"{p}_gpu_h"] for p in ("useful", "under_filled", "recompute", "idle", "over_provisioned")]
        assert all(v is not None and v >= 0 for v in parts)
    assert not comparison.notes  # one family: nothing mixed


def test_a_comparison_is_written_as_parquet_and_json(comparison, tmp_path):
    paths = comparison.write(tmp_path)
    assert {p.name for p in paths} == {"compare.parquet", "compare.json"}
    assert pq.read_table(tmp_path / "compare.parquet").num_rows == comparison.options.num_rows


def test_an_option_that_does_not_fit_is_listed_with_the_reason():
    big = {**BASE, "model": "llama-3.1-70b"}
    res = compare(load_scenario({**big, "hardware": "h200", "quantization": "fp8"}), hardware=["l4"],
                  quantization=["bf16"], rate_per_s=1.0, seeds=1, workers=1)
    (row,) = res.options.to_pylist()
    assert not row["fits"] and not row["meets_slo"]
    assert row["reason"].startswith("does not fit: ") and "GiB" in row["reason"]


def test_auto_prices_a_whole_comparison_with_one_family():
    """A measured profile and a roofline model different engines: with kind auto, an H200/H100
    comparison where only H100 has a measured profile prices both on the roofline (their ratio is
    then the hardware's), and says so; where every option has one, each is priced with its own."""
    sc = load_scenario({**BASE, "profile": {"kind": "auto"}})
    # h100-sxm bf16 has a shipped measured profile; h200 does not (the datasheet roofline).
    assert sc.build_profile().provenance.kind != "derived"
    both = compare(sc, hardware=["h100-sxm", "h200"], quantization=["bf16"], rate_per_s=5.0, seeds=1, workers=1)
    assert {r["profile_kind"] for r in both.options.to_pylist()} == {"derived"}
    assert both.family == "roofline"
    assert any("h200 bf16 tp1 has no measured profile" in n for n in both.notes), both.notes
    assert not any("mix profile families" in n for n in both.notes)
    alone = compare(sc, hardware=["h100-sxm"], quantization=["bf16"], rate_per_s=5.0, seeds=1, workers=1)
    (row,) = alone.options.to_pylist()
    assert row["profile_kind"] != "derived" and alone.family == "measured"
    measured = compare(sc, hardware=["h200"], quantization=["bf16"], rate_per_s=5.0, seeds=1, workers=1,
                       family="measured")
    (row,) = measured.options.to_pylist()
    assert not row["fits"] and row["reason"].startswith("no measured profile")


@pytest.mark.parametrize("kwargs, pattern", [
    ({"hardware": ["h100"]}, r"hardware 'h100' is not in the catalog \(did you mean 'h200', 'h100-sxm', 'gh200'\?\); "
                             r"known: a100-40gb, "),
    ({"quantization": ["int3"]}, r"quantization 'int3' is not in the catalog"),
    ({"hardware": []}, r"hardware: give at least one"),
    ({"tp": [0]}, r"tp \[0\]: give whole numbers >= 1"),
    ({"rate_per_s": -1.0}, r"rate -1.0: must be a number of requests/s > 0"),
    ({"family": "vllm"}, r"family 'vllm': must be one of auto, roofline, measured"),
    ({"options": [("h100-sxm", "bf16")]}, r"options: give the options, or hardware and quantization to combine, not both"),
    ({"hardware": (), "quantization": (), "options": []}, r"options: give at least one"),
    ({"hardware": (), "quantization": (), "options": ["h100-sxm:bf16"]}, r"options\[0\] = 'h100-sxm:bf16': give \(hardware, "),
    ({"hardware": (), "quantization": (), "options": [("h100-sxm", "bf16"), ("h100-sxm", "bf16", 1)]},
     r"options: h100-sxm bf16 tp1 is given twice"),
    ({"hardware": (), "quantization": (), "options": [("h100-sxm", "int3")]}, r"quantization 'int3' is not in the catalog"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, pattern):
    args = {"hardware": ["h100-sxm"], "quantization": ["bf16"], "rate_per_s": 1.0, **kwargs}
    with pytest.raises(CompareError, match=pattern):
        compare(load_scenario(BASE), **args)


def test_explicit_options_compare_exactly_those(comparison):
    """Two options as (hardware, quantization[, tp]) pairs, not the grid of four they would make:
    the H100 bf16 row is the grid comparison's row value for value (same seeds, same curve)."""
    res = compare(load_scenario(BASE), options=[("l4", "fp8"), ("h100-sxm", "bf16", 1)], rate_per_s=20.0, seeds=1,
                  workers=1)
    rows = {r["option"]: r for r in res.options.to_pylist()}
    assert set(rows) == {"l4 fp8 tp1", "h100-sxm bf16 tp1"}
    grid = {r["option"]: r for r in comparison.options.to_pylist()}
    assert rows["h100-sxm bf16 tp1"] == grid["h100-sxm bf16 tp1"]
    assert rows["l4 fp8 tp1"]["quantization"] == "fp8" and rows["l4 fp8 tp1"]["hardware"] == "l4"


def test_one_hardware_price_cannot_span_several():
    sc = load_scenario({**BASE, "cost": {"usd_per_gpu_hour": 2.0}})
    with pytest.raises(CompareError, match=r"cost\.usd_per_gpu_hour = 2 is one hardware's price"):
        compare(sc, hardware=["h100-sxm", "h200"], quantization=["bf16"], rate_per_s=1.0)


@pytest.mark.parametrize("args, pattern", [
    (["--hardware", "h100-sxm,nope"], r"--hardware: hardware 'nope' is not in the catalog"),
    (["--hardware", "h100-sxm", "--slo", "ttft=1s"], r"--slo"),
    (["--hardware", "h100-sxm", "--rate", "-2"], r"--rate"),
    (["--hardware", "h100-sxm", "--tp", "one"], r"--tp"),
    ([], r"--hardware: give the hardware to compare"),
    (["--option", "h100-sxm"], r"--option 'h100-sxm': give HW:QUANT or HW:QUANT:TP"),
    (["--option", "h100-sxm:bf16:two"], r"--option 'h100-sxm:bf16:two': the TP 'two' is not a whole number"),
    (["--option", "h100-sxm:bf16", "--hardware", "l4"], r"--option: give the options one by one, or --hardware"),
    (["--option", "h100-sxm:bf16", "--option", "nope:fp8"], r"--option: hardware 'nope' is not in the catalog"),
    # checked before an executor is made: the hardware is named, not a Ray address that answers nothing
    (["--hardware", "nope", "--ray", "127.0.0.1:9"], r"--hardware: hardware 'nope' is not in the catalog"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, pattern):
    f = tmp_path / "s.yaml"
    import yaml

    f.write_text(yaml.safe_dump(BASE))
    res = run_app("compare", str(f), *args, "-o", str(tmp_path / "out"), "-q")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: "), res.stderr
    assert __import__("re").search(pattern, lines[0]), lines[0]


def test_a_diurnal_workload_keeps_its_rate_and_the_fleet_is_sized_for_its_peak():
    # Mean 6 requests/s, peak 4x the trough over a 10-minute "day" on L4s (about 6 requests/s
    # each under the SLO): the static fleet is sized for the peak (9.6/s), and in the trough
    # windows its spare replicas show as over-provisioned.
    data = {**BASE, "cost": {"window_s": 60.0},
            "workload": {**BASE["workload"], "num_requests": None, "duration_s": 600.0,
                         "arrival": {"rate_profile": {"shape": "diurnal", "mean_rate_per_s": 6.0, "peak_to_trough": 4.0,
                                                      "period_s": 600.0, "peak_at_s": 300.0}}}}
    res = compare(load_scenario(data), hardware=["l4"], quantization=["bf16"], seeds=1, workers=1)
    (row,) = res.options.to_pylist()
    assert row["meets_slo"], row
    assert res.target_rate_per_s == pytest.approx(6.0)
    assert row["sized_for_rate_per_s"] == pytest.approx(9.6, rel=1e-3)
    assert row["replicas_needed"] == math.ceil(9.6 / row["max_rate_per_replica_per_s"] - 1e-9) >= 2
    win = res.waste_windows(row["option"]).to_pydict()
    over = win["over_provisioned_gpu_s"]
    trough, peak = over[0], over[5]  # the first minute is the trough (2.4/s), minute 5 the peak
    assert trough > 0 and peak == 0.0, over
    assert row["over_provisioned_gpu_h"] > 0
