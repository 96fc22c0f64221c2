"""The benchmark pipeline runs end to end (a smoke run: its figures mean nothing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from framering.cli import main


def test_framering_bench_writes_a_table_json_and_target_verdicts(
    tmp_path: Path, capsys: object
) -> None:
    assert main(["bench", "--smoke", "--workers", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "framering engine" in printed and "memcpy of the same bytes" in printed
    assert "targets" in printed
    (result,) = tmp_path.glob("engine-*.json")
    record = json.loads(result.read_text())
    tools = {r["tool"] for r in record["records"]}
    assert {"framering engine", "numpy float32", "OpenCV", "Pillow alpha_composite"} <= tools
    assert "multiprocessing.Pool (pickled)" in tools
    engine = [r for r in record["records"] if r["tool"] == "framering engine"]
    assert {r["workers"] for r in engine} == {1, 2}
    for r in record["records"]:
        assert r.get("max_error") is None or r["max_error"] <= 2, r  # pictures checked
    throughput = [r for r in record["records"] if r["metric"] == "throughput"]
    assert all("max_error" in r for r in throughput if "memcpy" not in r["tool"])
    assert record["machine"]["versions"]["numpy"]
    machine = record["machine"]
    assert f"machine: {machine['cpu_model']} ({machine['llvm_cpu']})" in printed  # which CPU


def test_framering_bench_formats_measures_every_format_and_transform(
    tmp_path: Path, capsys: object
) -> None:
    assert main(["bench", "--formats", "--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "i420 delivery costs" in printed and "static scale area layer" in printed
    assert "machine: " in printed
    (result,) = tmp_path.glob("formats-*.json")
    rows = json.loads(result.read_text())["rows"]
    variants = {(r["section"], r["variant"]) for r in rows}
    for fmt in ("rgba", "bgra", "bgr", "i420", "nv12"):
        assert ("delivery", fmt) in variants
    for fmt in ("rgba", "bgra", "rgb", "bgr", "i420", "nv12"):
        assert ("inputs", fmt) in variants
    assert ("transforms", "scale bicubic, live") in variants
    assert ("encode", "libx264 ultrafast") in variants  # PyAV is in the test extra
    assert "encode (1080p I420, PyAV, ms)" in printed
    assert all(r["worker_ms"] > 0 for r in rows)


def test_framering_bench_damage_compares_damage_on_and_off_and_gives_verdicts(
    tmp_path: Path, capsys: object
) -> None:
    assert main(["bench", "--damage", "--smoke", "--workers", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "machine: " in printed and "animated studio, damage on/off" in printed
    (result,) = tmp_path.glob("damage-*.json")
    rows = json.loads(result.read_text())["rows"]
    cases = {(r["section"], r["case"], r["damage"]) for r in rows}
    for case in ("static", "animated", "everything moves"):
        assert ("throughput", case, True) in cases and ("throughput", case, False) in cases
    still = next(
        r for r in rows if (r["section"], r["case"], r["damage"]) == ("throughput", "static", True)
    )
    assert still["damaged_fraction"] < 0.5  # a still scene recomposites (almost) nothing
    steps = json.loads(result.read_text())["parent_steps"]
    # a frame a worker composites takes more Python steps than one its slot already holds
    assert 0 < steps["static: python calls per frame"] < steps["two moved: python calls per frame"]
    assert steps["thread round trip cpu s"] > 0
    assert steps["python hot s"] > 0 and steps["python after a sleep s"] > 0
    kernels = {r["case"] for r in rows if r["section"] == "full" and r["damage"] is None}
    assert "studio-1080p, in-process kernel, 2 threads" in kernels  # the machine's own scaling
    assert "the kernel alone on 2 threads" in printed
    assert "Python calls and" in printed
    if importlib.util.find_spec("matplotlib") is not None:  # the 'bench' extra plots
        assert list(tmp_path.glob("damage-*.png"))
    else:
        assert "plot skipped" in printed


def test_framering_bench_streams_reports_paced_streams_and_bands(
    tmp_path: Path, capsys: object
) -> None:
    assert main(["bench", "--streams", "--smoke", "--workers", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "machine: " in printed and "greedy fps" in printed
    assert "paced 30 fps studio streams" in printed and "bands / frame" in printed
    (result,) = tmp_path.glob("streams-*.json")
    record = json.loads(result.read_text())
    assert [row["streams"] for row in record["paced"]] == [1, 2]
    assert all(row["greedy_fps"] > 0 for row in record["paced"])
    assert {row["split"] for row in record["bands"]} == {"frame", "bands"}
    [bands] = [row for row in record["bands"] if row["split"] == "bands"]
    assert bands["banded_frames"] > 0
    assert len(bands["block_latency_p50_s"]) == 4  # the engines took turns, block by block
    assert record["bands_bound"] > 0  # the kernel alone, bands on threads at once
    assert "the kernel alone, bands on threads at once" in printed


def test_framering_bench_cluster_reports_driver_cost_and_failover(
    tmp_path: Path, capsys: object
) -> None:
    assert main(["bench", "--cluster", "--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "machine: " in printed and "Ray calls" in printed and "failover: " in printed
    (result,) = tmp_path.glob("cluster-*.json")
    record = json.loads(result.read_text())
    (steady,) = record["steady"]
    assert steady["nodes"] == 2 and steady["streams"] == 2
    assert all(fps > 0 for fps in steady["fps_per_node"].values())
    assert steady["ray_calls_per_s"] > 0 and steady["driver_cpu_s_per_s"] > 0
    failover = record["failover"]
    assert failover["resumed"] == failover["streams_lost"] > 0
    assert record["costs"]["ray_call_s"] > 0
