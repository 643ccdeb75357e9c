"""The planner: its choice meets the SLOs on seeds it never used while one replica fewer does not,
an unservable workload names its binding constraint, bad input is one line, and a saved plan
reads back and runs."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from calibration import GPUS
from sim import load_scenario
from sim.analysis.plan import CONFIRM_SEED_OFFSET, PlanError, load_plan, plan
from sim.analysis.slo import meets, parse_slo
from tests.helpers import SMALL_CHAT, run_app

# Llama-3.1-8B, short chat-like requests: each simulation is a few hundred requests.
BASE = SMALL_CHAT
SLOS = ["ttft_p99=500ms"]
FRESH = (2000, 2001, 2002)  # neither search seeds (0, ...) nor confirmation seeds (1000, ...)


@pytest.fixture(scope="module")
def h100_plan():
    # One H100 sustains about 26 requests/s under the SLO here: 35/s needs two.
    return plan(load_scenario(BASE), slos=SLOS, rate_per_s=35.0, hardware=["h100-sxm"], quantization=["bf16"], tp=[1],
                engine_grid={"max_num_seqs": [64], "max_num_batched_tokens": [2048]}, seeds=1, confirm_seeds=2,
                workers=1)


def _fleet_meets(fleet, replicas: int, seed: int) -> tuple[bool, list[str]]:
    """The fleet with ``replicas`` replicas and ``seed``, as many requests per replica as the search's runs."""
    from sim.engine import simulate

    data = fleet.to_dict()
    data.update(replicas=replicas, seed=seed)
    data["workload"]["num_requests"] = fleet.workload.num_requests * replicas
    return meets(simulate(load_scenario(data), records="summary").summary, [parse_slo(s) for s in SLOS])


def test_the_choice_meets_the_slos_on_fresh_seeds_and_one_replica_fewer_does_not(h100_plan):
    rec = h100_plan.recommendation
    assert rec is not None and rec["rank"] == 1 and rec["confirmed"] and rec["meets_slo"]
    assert rec["replicas"] == 2, rec
    assert h100_plan.data["inputs"]["confirm_seeds"] == [CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + 1]
    assert h100_plan.fleet.replicas == rec["replicas"]
    for seed in FRESH:
        ok, why = _fleet_meets(h100_plan.fleet, rec["replicas"], seed)
        assert ok, (seed, why)
        ok, why = _fleet_meets(h100_plan.fleet, rec["replicas"] - 1, seed)
        assert not ok, seed
    # Ranked cheapest first; everything considered cheaper than the choice fails the SLOs.
    ranked = h100_plan.ranked
    assert [r["usd_per_hour"] for r in ranked] == sorted(r["usd_per_hour"] for r in ranked)
    cheaper = [r for r in h100_plan.options.to_pylist() if r["usd_per_hour"] is not None
               and r["usd_per_hour"] < rec["usd_per_hour"]]
    assert all(r["rank"] is None for r in cheaper)
    assert rec["usd_per_hour"] == pytest.approx(2 * GPUS["h100-sxm"].price_usd_per_hour)  # two H100s on demand
    assert rec["headroom"] == pytest.approx(2 * rec["max_rate_per_replica_per_s"] / 35.0)
    assert 0 < rec["utilisation"] <= 1 and 0 <= rec["waste_share"] < 1
    assert h100_plan.simulations > 0 and h100_plan.per_hardware[0]["option"] == rec["option"]
    assert h100_plan.infeasible is None


def test_a_latency_floor_above_the_slo_is_named_the_binding_constraint():
    res = plan(load_scenario(BASE), slos=["ttft_p99=1ms"], rate_per_s=5.0, hardware=["h100-sxm"],
               quantization=["bf16"], tp=[1], engine_grid={"max_num_seqs": [64], "max_num_batched_tokens": [2048]},
               seeds=1, confirm_seeds=1, workers=1)
    assert res.recommendation is None and res.ranked == [] and res.fleet is None
    assert res.infeasible["binding_constraint"] == "latency"
    assert "latency floor above the SLO" in res.infeasible["detail"] and "ttft_p99" in res.infeasible["detail"]
    (row,) = res.per_hardware
    assert row["binding"] == "latency" and row["reason"]


def test_a_model_that_fits_nowhere_is_infeasible_for_memory(tmp_path):
    big = load_scenario({**BASE, "model": "llama-3.1-70b", "hardware": "h200", "quantization": "fp8"})
    res = plan(big, slos=SLOS, rate_per_s=1.0, hardware=["l4", "a10g"], quantization=["bf16"], tp=[1], workers=1)
    assert res.infeasible["binding_constraint"] == "memory"
    assert "fits none" in res.infeasible["detail"] and "GiB" in res.infeasible["detail"]
    assert res.simulations == 0 and len(res.per_hardware) == 2
    res.write(tmp_path)
    assert not (tmp_path / "fleet.yaml").exists()
    assert json.loads((tmp_path / "plan.json").read_text())["infeasible"]["binding_constraint"] == "memory"
    out = run_app("run", str(tmp_path), "--no-write", "-q")
    assert out.exit_code == 2 and "no configuration met" in out.stderr


def test_bad_arguments_raise_one_line():
    sc = load_scenario(BASE)
    with pytest.raises(PlanError, match=r"hardware 'h100' is not in the catalog \(did you mean"):
        plan(sc, slos=SLOS, rate_per_s=1.0, hardware=["h100"], quantization=["bf16"])
    with pytest.raises(PlanError, match=r"rate -1.0: must be a number of requests/s > 0"):
        plan(sc, slos=SLOS, rate_per_s=-1.0, hardware=["h100-sxm"], quantization=["bf16"])
    with pytest.raises(PlanError, match=r"unknown metric 'latency'"):
        plan(sc, slos=["latency_p99=1s"], rate_per_s=1.0, hardware=["h100-sxm"], quantization=["bf16"])
    with pytest.raises(PlanError, match=r"engine_grid max_num_seqs 0"):
        plan(sc, slos=SLOS, rate_per_s=1.0, hardware=["h100-sxm"], quantization=["bf16"],
             engine_grid={"max_num_seqs": [0]})


def test_deployment_patterns_price_the_recommended_fleet_and_break_even_where_the_bills_cross():
    from sim.analysis.deployment import ManagedAPI, managed_api_cost
    from sim.analysis.plan import DeploymentInputs
    from sim.config import CostSpec

    api = ManagedAPI(0.20, 0.60)
    owned = CostSpec(model="owned", purchase_usd_per_gpu=30000.0, usd_per_kwh=0.12)
    res = plan(load_scenario(BASE), slos=SLOS, rate_per_s=35.0, hardware=["h100-sxm"], quantization=["bf16"], tp=[1],
               engine_grid={"max_num_seqs": [64], "max_num_batched_tokens": [2048]}, seeds=1, confirm_seeds=1,
               workers=1, deployment=DeploymentInputs(api=api, committed=CostSpec(pricing="committed", discount=0.4),
                                                      owned=owned))
    rec, pats = res.recommendation, {d["kind"]: d for d in res.data["deployments"]}
    assert all(pats[k]["usd_per_month"] is not None for k in ("cloud-on-demand", "cloud-committed", "owned",
                                                               "managed-api"))
    assert pats["cloud-committed"]["usd_per_month"] == pytest.approx(0.6 * pats["cloud-on-demand"]["usd_per_month"])
    # The managed API costs exactly the month's tokens at its prices: 35 requests/s for 730 hours, at the
    # confirmed fleet's tokens per request.
    a = pats["managed-api"]
    in_tokens, out_tokens = (a["assumptions"][f"{k}_tokens_per_month"]["value"] for k in ("input", "output"))
    assert a["usd_per_month"] == in_tokens * 0.20 / 1e6 + out_tokens * 0.60 / 1e6
    assert out_tokens / (35.0 * 730 * 3600) == pytest.approx(70.0, rel=0.1)  # uniform 20..120 output tokens
    assert in_tokens / (35.0 * 730 * 3600) == pytest.approx(350.0, rel=0.1)  # uniform 100..600 prompt tokens
    ratio = in_tokens / out_tokens
    # Break-even: where the on-demand fleet's month equals the API's bill (or None, said, beyond its capacity).
    be = res.data["breakeven"]
    v = be["managed_api_tokens_per_month"]
    if v is None:
        assert "cheaper at every volume" in be["detail"]
    else:
        assert managed_api_cost(ratio * v, v, api) == pytest.approx(pats["cloud-on-demand"]["usd_per_month"], rel=1e-9)
    u = be["owned_vs_cloud_utilisation"]
    assert u is not None and 0 < u < 1 and f"{u:.1%}" in be["detail"]
    assert res.data["inputs"]["deployment"]["api"]["usd_per_million_output"] == 0.60


def test_a_time_varying_workload_gets_its_fleet_per_hour(tmp_path):
    diurnal = {**BASE, "workload": {**BASE["workload"], "num_requests": None, "duration_s": 120,
                                    "arrival": {"process": "poisson", "rate_profile": {
                                        "shape": "diurnal", "mean_rate_per_s": 40.0, "peak_to_trough": 4.0}}}}
    del diurnal["workload"]["num_requests"]
    res = plan(load_scenario(diurnal), slos=SLOS, hardware=["h100-sxm"], quantization=["bf16"], tp=[1],
               engine_grid={"max_num_seqs": [64], "max_num_batched_tokens": [2048]}, seeds=1, confirm_seeds=1,
               workers=1)
    tv, rec = res.data["time_varying"], res.recommendation
    assert res.data["inputs"]["time_varying"] and res.hourly is not None and res.hourly.num_rows == 24
    needed = res.hourly.column("replicas_needed").to_pylist()
    # Sized per hour by the recommended option's highest rate per replica; the static fleet holds the peak.
    rates = res.hourly.column("rate_per_s").to_pylist()
    per = rec["max_rate_per_replica_per_s"]
    assert needed == [max(1, math.ceil(r / per - 1e-9)) for r in rates]
    assert tv["static_replicas"] == max(needed) and max(rates) == pytest.approx(64.0, rel=0.01)  # 40 × 2·4/(4+1)
    assert tv["usd_per_day_resized"] <= tv["usd_per_day_static"]
    assert 0 <= tv["overprovisioned_share"] < 1 and tv["scale_up_delay_s"] == 600.0
    names = {p.name for p in res.write(tmp_path)}
    assert "hourly.parquet" in names and load_plan(tmp_path).hourly.equals(res.hourly)


@pytest.mark.parametrize("args, pattern", [
    (["--api-price", "0.2"], r"--api-price '0\.2': give USD per 1M input and per 1M output tokens"),
    (["--committed-discount", "1.5"], r"--committed-discount 1\.5: must be a share in \[0, 1\)"),
    (["--owned-purchase", "30000"], r"--owned-purchase and --owned-kwh go together"),
    (["--scale-up-delay", "soon"], r"--scale-up-delay 'soon': expected a positive duration"),
    (["--slo", "latency_p99=1s"], r"--slo SLO 'latency_p99=1s': unknown metric 'latency'"),
    (["--rate", "-2"], r"--rate -2: must be a number of requests/s > 0"),
    (["--hardware", "h100-sxm,h100"], r"--hardware: hardware 'h100' is not in the catalog \(did you mean 'h200', "),
    (["--tp", "0"], r"--tp '0': give whole numbers >= 1"),
    (["--max-num-seqs", "many"], r"--max-num-seqs 'many'"),
    # checked before an executor is made: the hardware is named, not a Ray address that answers nothing
    (["--hardware", "h100", "--ray", "127.0.0.1:9"], r"--hardware: hardware 'h100' is not in the catalog"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, pattern):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(BASE))
    res = run_app("plan", str(f), "--hardware", "h100-sxm", *args, "-o", str(tmp_path / "out"), "-q")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("capsim: error: "), res.stderr
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "out" / "plan.json").exists()


def test_a_saved_plan_reads_back_and_its_fleet_runs(h100_plan, tmp_path):
    d = tmp_path / "plan"
    names = {p.name for p in h100_plan.write(d)}
    assert names == {"plan.json", "options.parquet", "curves.parquet", "fleet.yaml"}
    back = load_plan(d)
    assert back.data == json.loads(json.dumps(h100_plan.data))
    assert back.options.equals(h100_plan.options) and back.curves.equals(h100_plan.curves)
    assert back.fleet == h100_plan.fleet and back.hourly is None
    assert back.recommendation["option"] == h100_plan.recommendation["option"]
    data = back.data
    assert data["kind"] == "capsim-plan" and data["version"] == 1
    assert data["time_varying"] is None and back.hourly is None  # a constant rate
    # Without deployment inputs every pattern is listed, only cloud on demand priced, each other with its reason.
    kinds = {d["kind"]: d for d in data["deployments"]}
    assert list(kinds) == ["cloud-on-demand", "cloud-committed", "cloud-spot", "owned", "managed-api", "cpu"]
    assert kinds["cloud-on-demand"]["usd_per_month"] == pytest.approx(2 * GPUS["h100-sxm"].price_usd_per_hour * 730)
    assert all(d["usd_per_month"] is None and d["reason"] for k, d in kinds.items() if k != "cloud-on-demand")
    assert data["breakeven"]["managed_api_tokens_per_month"] is None and "no price given" in data["breakeven"]["detail"]
    assert data["inputs"]["slos"] == SLOS and data["inputs"]["target_rate_per_s"] == 35.0
    assert set(back.curves.column("option").to_pylist()) <= set(back.options.column("option").to_pylist())
    for target in (d / "fleet.yaml", d):  # the scenario file, or the plan directory standing for it
        res = run_app("run", str(target), "--no-write", "-q")
        assert res.exit_code == 0, res.stderr
    with pytest.raises(PlanError, match="no plan.json here"):
        load_plan(tmp_path)


def test_the_cli_writes_a_plan_and_prints_both_tables(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(BASE))
    res = run_app("plan", str(f), "--hardware", "h100-sxm,l4", "--tp", "1", "--rate", "10", "--slo", "ttft_p99=500ms",
                  "--seeds", "1", "--confirm-seeds", "1", "--max-num-seqs", "64", "--max-num-batched-tokens", "2048",
                  "--workers", "1", "-o", str(tmp_path / "p"))
    assert res.exit_code == 0, res.stderr
    assert "cheapest fleet first" in res.stdout and "each hardware's best configuration" in res.stdout
    assert (tmp_path / "p" / "plan.json").exists() and (tmp_path / "p" / "fleet.yaml").exists()


def test_a_real_plan_reports_its_recommendation_exactly(h100_plan, tmp_path):
    # The report's figures are the plan's own, read back from its directory (tests/test_report.py
    # checks the document's shape and Chromium's view of it on a plan written by hand).
    from sim.analysis.report import report
    from tests.test_report import REC_FIELDS, _page

    h100_plan.write(tmp_path / "plan")
    written = report(tmp_path / "plan", tmp_path / "report")
    assert {p.name for p in written} >= {"report.html", "report.md"}
    data = json.loads((tmp_path / "plan" / "plan.json").read_text())
    cells = {(a["data-role"], a["data-field"]): json.loads(a["data-value"])
             for _, a in _page(tmp_path / "report" / "report.html").elements if a.get("data-role") and a.get("data-field")}
    for key in ("option", *(k for k, _ in REC_FIELDS)):
        assert cells[("recommendation", key)] == data["recommendation"][key], key
    md = (tmp_path / "report" / "report.md").read_text()
    assert data["recommendation"]["option"] in md and "Deployment patterns" in md
