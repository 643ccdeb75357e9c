"""Profiles from published GPU operator timings (Vidur's A100/H100 tables in ../shared).

The acceptance: held-out token counts (a quarter, never fitted) within median 5% / p90 10% for the
per-layer linear-layer time; all-reduce median within 10% over 64 KiB - 64 MiB; physics on the
fitted profiles; the default scenario on H100 priced by a (derived-from-)measured profile, and
saying so. The shipped profiles and the roofline's all-reduce figures must be what a refit of the
shared tables gives, so none of them can drift from the data or be edited by hand.
"""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.measured import (MeasuredProfile, ProfileRecord, linear_seconds, list_profiles, read_profile,
                                  shipped_profile_dir)
from calibration.operator_fit import MESSAGE_RANGE, SoftRoof, fit_collectives, heldout_mask
from calibration.operator_profiles import SHIPPED, build_record, collectives_toml, fit_gpus
from calibration.operators import OperatorTableError, read_operator_tables
from calibration.profile import BatchShape, ReplicaSpec
from calibration.spec import AutoProfileSpec, RooflineProfileSpec, build_profile
from tests.helpers import assert_one_line_error, run_app
from tests.shared_data import SHARED, need

VIDUR = SHARED / "gpu-measurements" / "vidur-profiling"
# The measured tables the shipped profiles rest on.
MEASURED = [("a100-80gb", "meta-llama/Meta-Llama-3-8B"), ("a100-80gb", "meta-llama/Meta-Llama-3-70B"),
            ("h100-sxm", "meta-llama/Llama-2-7b-hf"), ("h100-sxm", "meta-llama/Llama-2-70b-hf")]


@pytest.fixture(scope="module")
def tables():
    return read_operator_tables(need(VIDUR))


@pytest.fixture(scope="module")
def fits(tables):
    return fit_gpus(tables)


def _decode(batch: int, context: int = 1) -> BatchShape:
    e = np.zeros(0, np.int64)
    return BatchShape(prefill_chunk=e, prefill_start=e, decode_context=np.full(batch, context, np.int64))


# -- acceptance: held-out error -------------------------------------------------------------------

@pytest.mark.parametrize("gpu, model", MEASURED)
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_linear_layer_time_on_heldout_token_counts(fits, gpu, model, tp):
    fit = fits[gpu].layers[(model, tp)]
    rows = fit.rows.to_pydict()
    held = np.array(rows["heldout"])
    tokens = np.array(rows["tokens"])
    # A quarter of the token counts, none of them in the fitted table.
    assert 0.2 <= held.mean() <= 0.3
    assert not np.isin(tokens[held], fit.linear.tokens).any()
    e = fit.linear.heldout
    assert e["median"] <= 0.05 and e["p90"] <= 0.10, e
    # Recompute the error independently of the fit's own bookkeeping.
    gemm = np.array(rows["gemm_s"])
    pred = np.interp(tokens[held], fit.linear.tokens, fit.linear.gemm_seconds)
    assert np.median(np.abs(pred / gemm[held] - 1)) == pytest.approx(e["median"], rel=1e-9)
    # The whole layer (GEMMs and elementwise work) as the profile prices it, per phase.
    for phase, err in fit.phases.items():
        assert err["median"] <= 0.05 and err["p90"] <= 0.12, (phase, err)


def test_allreduce_fit_on_heldout_message_sizes(tables):
    got = fit_collectives(tables.collectives)
    assert {(c.gpu, c.workers) for c in got} == {(g, p) for g in ("a100-80gb", "h100-sxm") for p in (2, 4, 8)}
    for c in got:
        assert c.heldout["median"] <= 0.10, (c.gpu, c.workers, c.heldout)
        # Physically sensible: tens of microseconds of latency, bus bandwidth below NVLink's per-direction peak.
        assert 5e-6 < c.latency_s < 100e-6
        assert 50 < c.busbw_gb_s < {"a100-80gb": 300, "h100-sxm": 450}[c.gpu]


def test_heldout_mask_keeps_the_ends_and_holds_out_a_quarter():
    x = np.repeat(np.arange(1, 401), 2)
    h = heldout_mask(x)
    assert not h[x == 1].any() and not h[x == 400].any()
    assert h.sum() == 2 * 100
    assert np.array_equal(h, heldout_mask(x))  # fixed seed


# -- what ships is what the data gives -------------------------------------------------------------

def test_roofline_allreduce_figures_are_a_refit_of_the_shared_tables(tables):
    from importlib import resources

    shipped = resources.files("calibration").joinpath("data/collectives.toml").read_text()
    assert shipped == collectives_toml(tables)


def test_shipped_profiles_are_a_refit_of_the_shared_tables(fits):
    shipped = {(r.model, r.quantization, r.hardware, r.tp): r for _, r in list_profiles([shipped_profile_dir()])}
    expected = [(m, q, g, t) for m, qs, g, tps in SHIPPED for q in qs for t in tps]
    assert len(shipped) >= 40
    for key in expected:
        record, _ = build_record(fits, *key)
        if not record.meta["weights_fit"]:
            assert key not in shipped
            continue
        have = shipped[key]
        assert have.kind == record.kind and have.layers == record.layers
        # Vidur's attention kernels read an fp16 cache: c_dc is a 16-bit one, rescaled per scenario.
        assert record.meta["kv_cache_dtype"] == "fp16" and have.kv_bytes_per_element == record.kv_bytes_per_element == 2
        assert have.coefficients == pytest.approx(record.coefficients, rel=1e-4), key
        assert have.linear_table == record.linear_table
        assert have.heldout_error.keys() == record.heldout_error.keys()
        for k, e in record.heldout_error.items():
            assert have.heldout_error[k] == pytest.approx(e), (key, k)


def test_kinds_and_provenance_say_what_was_measured():
    def rec(model, quant, gpu, tp):
        return read_profile(shipped_profile_dir() / f"{model}__{quant}__{gpu}__tp{tp}.json")

    a = rec("llama-3.1-8b", "fp16", "a100-80gb", 1)
    assert a.kind == "measured" and "measured on meta-llama/Meta-Llama-3-8B" in a.source
    assert a.meta["precision_measured"] == "fp16" and "fitted" in a.meta and "Vidur" in a.source
    # Layer shapes measured on another model: said, not claimed as a direct measurement.
    b = rec("llama-3.1-70b", "fp16", "h100-sxm", 2)
    assert b.kind == "measured"
    assert "measured on meta-llama/Llama-2-70b-hf" in b.source and "vocabulary differs" in b.source
    # bf16 runs on the fp16 timings; quantized and unmeasured shapes are derived.
    assert rec("llama-3.1-8b", "bf16", "a100-80gb", 1).kind == "derived-from-measured"
    for q in ("fp8", "int4-awq"):
        r = rec("llama-3.1-8b", q, "h100-sxm", 1)
        assert r.kind == "derived-from-measured" and r.linear_table is None
    c = rec("llama-3.1-8b", "bf16", "h100-sxm", 1)
    assert c.kind == "derived-from-measured" and "no h100-sxm table has Llama-3.1-8B's layer shapes" in c.source
    assert "leave-one-model-out" in " ".join(c.heldout_error)
    # No profile for a configuration whose weights do not fit (70B fp16 on one GPU).
    assert not (shipped_profile_dir() / "llama-3.1-70b__fp16__a100-80gb__tp1.json").exists()


def test_the_repository_ships_no_source_table():
    root = shipped_profile_dir()
    for f in root.iterdir():
        assert f.suffix in (".json", ".parquet", ".md"), f
        assert f.stat().st_size < 64 * 2**10, f
    for f in root.glob("*.parquet"):
        import pyarrow.parquet as pq

        assert not any(c.startswith("time_stats") for c in pq.read_schema(f).names)


# -- physics ---------------------------------------------------------------------------------------

def _shipped():
    return [(f.stem, r) for f, r in list_profiles([shipped_profile_dir()])]


@pytest.mark.parametrize("name, record", _shipped(), ids=lambda v: v if isinstance(v, str) else "")
def test_profiles_obey_the_physics(name, record):
    base = build_profile(RooflineProfileSpec(), model=record.model, hardware=record.hardware,
                         quantization=record.quantization, tp=record.tp)
    p = MeasuredProfile(record=record, base=base)
    # A decode step reads every weight once: never faster than the weights over peak HBM bandwidth.
    floor = base.weight_bytes_per_gpu / (base.gpu.hbm_tb_s * 1e12)
    for b in (1, 2, 8, 32, 128, 256):
        assert p.step(_decode(b)).seconds >= floor, (b, floor)
    # GEMM time per token falls as tokens grow, until the compute roof, then stays flat.
    c = record.coefficients
    n = 2.0 ** np.arange(0, 16)
    roof = SoftRoof(c["w"], c["c_lin"], c["knee"])(n) / n
    assert (np.diff(roof) < 0).all()
    assert roof[-1] == pytest.approx(c["c_lin"], rel=0.05)
    priced = np.asarray(linear_seconds(c, n, record.linear_arrays())) / n
    knee = c["w"] / c["c_lin"]
    below = n <= knee / 4
    assert (np.diff(priced[below]) < 0).all() and (priced[below][1:] / priced[below][:-1] < 0.7).all()
    # Past the roof: flat to within the kernels' measured staircase (tile and kernel switches):
    # no doubling of the tokens moves the per-token time by 10% or more.
    assert (priced[1:] / priced[:-1]).max() < 1.10
    past = n >= 8 * knee
    assert past.sum() >= 3 and np.abs(priced[past][1:] / priced[past][:-1] - 1).max() < 0.10


@settings(max_examples=60, deadline=None)
@given(w=st.floats(1e-6, 1e-2), c=st.floats(1e-10, 1e-5), k=st.floats(0.5, 50.0))
def test_a_rounded_roof_lies_on_or_above_the_roofline_and_its_per_token_time_falls(w, c, k):
    n = np.geomspace(1, 1e5, 50)
    t = SoftRoof(w, c, k)(n)
    assert (t >= np.maximum(w, c * n) * (1 - 1e-9)).all()
    assert (t <= (w + c * n) * (1 + 1e-9) * 2 ** max(0.0, 1 / k - 1)).all()
    assert (np.diff(t / n) <= 1e-12 * (t / n)[:-1]).all()


# -- the profile's linear table --------------------------------------------------------------------

def test_a_linear_table_is_interpolated_then_continued_at_the_compute_slope():
    c = {"w": 1e-4, "c_lin": 2e-7}
    table = (np.array([1.0, 100.0, 1000.0]), np.array([1e-4, 1.2e-4, 3e-4]))
    assert linear_seconds(c, 50.5, table) == pytest.approx(1.1e-4)
    assert linear_seconds(c, 1000.0, table) == pytest.approx(3e-4)
    assert linear_seconds(c, 2000.0, table) == pytest.approx(3e-4 + 1000 * 2e-7)
    got = linear_seconds(c, np.array([1.0, 2000.0]), table)
    assert got == pytest.approx([1e-4, 5e-4])


@pytest.mark.parametrize("table", [{"tokens": [1], "seconds": [1e-3]}, {"tokens": [2, 1], "seconds": [1, 1]},
                                   {"tokens": [1, 2], "seconds": [1e-3, -1]}, {"tokens": [0, 2], "seconds": [1, 1]}])
def test_a_malformed_linear_table_is_refused(table):
    record = read_profile(shipped_profile_dir() / "llama-3.1-8b__fp16__a100-80gb__tp1.json")
    data = json.loads(record.to_json())
    data["linear_table"] = table
    with pytest.raises(ValueError, match="linear_table"):
        ProfileRecord.from_json(json.dumps(data), "x.json")


# -- the simulator uses them -----------------------------------------------------------------------

def test_default_scenario_on_h100_is_priced_by_a_measured_profile_and_says_so(tmp_path):
    from sim.config import default_scenario

    sc = default_scenario()
    assert sc.hardware == "h100-sxm" and isinstance(sc.profile, AutoProfileSpec)
    prov = sc.build_profile().provenance
    assert prov.kind in ("measured", "derived-from-measured")
    result = run_app("run", "--set", "workload.duration_s=40", "--set", "measurement.warmup_s=5", "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["profile"]["kind"] == prov.kind and "Vidur" in summary["profile"]["source"]


def test_a_measured_a100_profile_loads_without_a_gpu_and_results_record_it(tmp_path):
    result = run_app("run", "--set", "hardware=a100-80gb", "--set", "quantization=fp16", "--set",
                     "workload.duration_s=30", "--set", "measurement.warmup_s=5", "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["profile"]["kind"] == "measured"
    assert "Meta-Llama-3-8B" in summary["profile"]["source"]


def test_roofline_uses_measured_allreduce_unless_the_scenario_sets_the_link():
    measured = build_profile(RooflineProfileSpec(), model="llama-3.1-70b", hardware="h100-sxm", quantization="fp8", tp=4)
    assert measured.allreduce is not None and "all-reduce measured" in measured.provenance.source
    own = build_profile(RooflineProfileSpec(interconnect_gb_s=450.0), model="llama-3.1-70b", hardware="h100-sxm",
                        quantization="fp8", tp=4)
    assert own.allreduce is None
    # The measured all-reduce costs more than the datasheet link: 29 us latency against 10 us.
    assert measured.step(_decode(64, 1024)).seconds > own.step(_decode(64, 1024)).seconds
    single = build_profile(RooflineProfileSpec(), model="llama-3.1-8b", hardware="h100-sxm", quantization="bf16", tp=1)
    assert single.allreduce is None


# -- errors ----------------------------------------------------------------------------------------

def test_reader_errors_are_one_line(tmp_path):
    with pytest.raises(OperatorTableError, match="no such directory"):
        read_operator_tables(tmp_path / "nope")
    with pytest.raises(OperatorTableError, match="format = 'x': unknown"):
        read_operator_tables(tmp_path, "x")
    with pytest.raises(OperatorTableError, match="no compute/"):
        read_operator_tables(tmp_path)
    bad = tmp_path / "compute" / "h100" / "org" / "m"
    bad.mkdir(parents=True)
    with gzip.open(bad / "mlp.csv.gz", "wt") as f:
        f.write("num_tokens,n_embd\n1,4096\n")
    with pytest.raises(OperatorTableError, match=r"mlp.csv.gz: lacks column\(s\) n_expanded_embd"):
        read_operator_tables(tmp_path)
    (bad / "mlp.csv.gz").unlink()
    other = tmp_path / "compute" / "tpu" / "org" / "m"
    other.mkdir(parents=True)
    cols = ["n_embd", "n_expanded_embd", "n_head", "n_kv_head", "vocab_size", "num_tensor_parallel_workers",
            "num_tokens"] + [f"time_stats.{o}.median" for o in ("attn_pre_proj", "attn_post_proj", "mlp_up_proj",
                                                                 "mlp_down_proj")]
    pa_table = pa.table({c: [1] for c in cols})
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa_table, other / "mlp.csv")
    with pytest.raises(OperatorTableError, match="GPU family 'tpu'"):
        read_operator_tables(tmp_path)


def test_cli_from_operators_errors_are_one_line(tmp_path):
    assert_one_line_error(run_app("calibrate", "--from-operators", tmp_path / "nope", "-o", tmp_path / "o"),
                          "no such directory")
    assert_one_line_error(run_app("calibrate", "--from-operators", need(VIDUR), "--model", "llama-3.1-8b",
                                  "--quant", "fp16", "--hardware", "h100-sxmm", "-o", tmp_path / "o"),
                          "--hardware 'h100-sxmm': unknown", "h100-sxm")
    assert_one_line_error(run_app("calibrate", "--from-operators", need(VIDUR), "--model", "llama-3.1-8b",
                                  "--quant", "fp16", "--hardware", "l40s", "-o", tmp_path / "o"),
                          "gpu = 'l40s'", "a100-80gb")
    assert_one_line_error(run_app("calibrate", "--from-operators", need(VIDUR), "--plot", tmp_path / "f.png",
                                  "-o", tmp_path / "o"), "--plot draws one configuration")
    assert_one_line_error(run_app("calibrate", "--from-operators", need(VIDUR), "--model", "llama-2-7b", "--quant",
                                  "fp16", "--hardware", "h100-sxm", "--plot", tmp_path / "f.gif", "-o", tmp_path / "o"),
                          "--plot", "must end in .png")


def test_cli_from_operators_writes_one_configuration(tmp_path):
    r = run_app("calibrate", "--from-operators", need(VIDUR), "--model", "llama-2-7b", "--quant", "fp16",
                "--hardware", "h100-sxm", "--tp", "2", "-o", tmp_path / "o", "--collectives", tmp_path / "c.toml",
                "--plot", tmp_path / "fit.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rec = read_profile(tmp_path / "o" / "llama-2-7b__fp16__h100-sxm__tp2.json")
    assert rec.kind == "measured" and "all-reduce" in rec.heldout_error
    assert (tmp_path / "c.toml").read_text().count("\nlatency_us = ") == 6
    base = build_profile(RooflineProfileSpec(), model="llama-2-7b", hardware="h100-sxm", quantization="fp16", tp=2)
    assert base.kv_capacity_tokens(ReplicaSpec(2, 0.9, 8192)) > 0


def test_catalog_profiles_lists_what_auto_can_use(tmp_path):
    r = run_app("catalog", "profiles", "--hardware", "a100-80gb", "--model", "llama-3.1-8b")
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "fp16" in out and "measured" in out and "layers of" in out and "Meta-Llama-3-8B" in out
    assert "h100-sxm" not in out
    # A user's directory is listed too, and first.
    write_profile_dir = tmp_path / "mine"
    rec = read_profile(shipped_profile_dir() / "llama-3.1-8b__fp16__a100-80gb__tp1.json")
    from calibration.measured import write_profile

    write_profile(write_profile_dir, rec, pa.table({"tokens": [1.0]}))
    r = run_app("catalog", "profiles", "--dir", write_profile_dir, "--model", "llama-3.1-8b", "--hardware", "a100-80gb")
    # The table wraps a long path inside its cell: compare without the wrapping.
    unwrapped = re.sub(r"[\s│]", "", r.stdout)
    assert r.exit_code == 0 and f"({write_profile_dir})".replace(" ", "") in unwrapped
    assert_one_line_error(run_app("catalog", "profiles", "--dir", tmp_path / "nope"), "--dir", "no such directory")
    assert_one_line_error(run_app("catalog", "profiles", "--model", "llama-9"), "no profile matches --model 'llama-9'")
