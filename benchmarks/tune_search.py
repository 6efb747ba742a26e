"""edgekit-tune's figures: the choice against the fastest front candidate, the size
objective, and the best built-in post-training recipe, on the example and a
keras.applications network (MobileNetV3Small or MobileNetV2) trained on the digits.

For each model: a latency search (post-training candidates of both backends, at most
--max_accuracy_drop points below float32), then the size objective on the same study
(no new trials). After the search, every front candidate and the built-in `ptq_*`
recipes' files are benchmarked again in ONE interleaved run (A B C ... in one process,
same inputs, same threads): the chosen file must be within 5% of the fastest front
candidate that meets the accuracy limit; the size objective must pick the smallest
file that meets it; and the chosen file must beat the best built-in recipe (the
fastest `ptq_*` recipe that meets the limit) on latency (beyond the noise band), size
or accuracy, and lose on none.

--model=example: the bundled example (8x8 digits). --model=mobilenet_v3_small or
mobilenet_v2: `tf_keras.applications.MobileNetV3Small` / `MobileNetV2` trained 5 epochs
on the digits at 32x32 RGB (`benchmarks/_digits_nets.py`, cached in
/tmp/edgekit-bench-models-v2). A built-in recipe the converter refuses for the model
(int16x8 has no HARD_SWISH kernel) is left out of the comparison with a line saying so.

    python benchmarks/tune_search.py --model=example [--num_runs=300] [--out=/tmp/tune_bench]

Measured 2026-12-02 on the 2-core AMD EPYC (AVX-512 VNNI) VM, shared with other jobs
(load average 8-10), `--model=example --out=/tmp/tune_bench3`: 16 post-training
candidates, noise band 8.0% (one file measured in several trials), 300+ interleaved runs
per file in the re-benchmark, 1 thread:

    file                      accuracy      KB   p50 us
    int8_per_tensor (chosen)    98.89%   145.5     18.3
    lq_dynamic_wi4_afp32        98.33%   107.7     67.6
    builtin ptq_int8            98.89%   145.9     17.6
    builtin ptq_dynamic         98.89%   163.7     35.5
    builtin ptq_float16         98.89%   275.9     31.7
    builtin ptq_int16x8         98.89%   198.3    691.5
    float32                     98.89%             36.0

- latency objective: int8_per_tensor, the fastest front candidate (ratio 1.000); 1.038x
  the built-in ptq_int8 file, inside the noise band (a tie);
- size objective: lq_dynamic_wi4_afp32 (107.7 KB), the smallest file within 1 point;
- against the best built-in recipe (ptq_int8): latency 1.038 (tie within 8%), size 0.997,
  accuracy +0.00 points: smaller by 0.4 KB (batch fixed at 1), loses on none beyond noise.

MobileNetV3Small, measured 2026-12-02 on the same VM (other jobs running, load 1-6),
`nice -n 5 python benchmarks/tune_search.py --model=mobilenet_v3_small
--out=/tmp/tune_bench_w2`: 16 post-training candidates in about 9 minutes (14 measured,
int16x8 and ptq_int16x8 failed: no int16x8 HARD_SWISH kernel), noise band 8.6%; the
re-benchmark ran 300+ interleaved runs per file, 1 thread (the machine was slower then
than during the search: every p50 about 2x, float32 included):

    file                      accuracy       KB   p50 us
    int8_per_tensor             96.66%   1570.4    303.7
    int8_per_channel            96.94%   1802.9    303.9
    dynamic (chosen)            96.66%   1685.4    255.3
    lq_dynamic_wi8_afp32        96.66%   1680.3    284.6
    lq_dynamic_wi4_afp32        92.48%   1113.1    639.9   (misses the 1-point limit)
    lq_weight_only_wi4_afp32    93.04%   1118.9   1119.2   (misses the 1-point limit)
    builtin ptq_int8            96.66%   1572.9    320.3
    builtin ptq_dynamic         96.66%   1687.9    262.6
    builtin ptq_float16         96.66%   3045.6    426.5
    float32                     96.66%             470.9

- latency objective: dynamic, the fastest front candidate meeting the limit (ratio 1.000);
- size objective: int8_per_tensor (1570.4 KB), the smallest file within 1 point (the int4
  files are smaller but lose 3.6-4.2 points);
- against the best built-in recipe (ptq_dynamic, the fastest meeting the limit): latency
  0.972 (a tie inside the 8.6% band), size 0.999 (2.5 KB smaller: batch fixed at 1),
  accuracy +0.00 points: loses on none, wins on size only by the batch-1 margin.

MobileNetV2, same VM and day (load 2-4), `nice -n 5 python benchmarks/tune_search.py
--model=mobilenet_v2 --out=/tmp/tune_bench_w2`: 16 post-training candidates measured in
about 6.5 minutes (9 for the whole script), noise band 2.5%; re-benchmark as above:

    file                      accuracy       KB   p50 us
    int8_per_tensor             87.47%   2257.2    373.9
    int8_per_channel (chosen)   88.30%   2656.2    369.9
    int8_float_fallback         88.30%   2656.2    368.9
    dynamic                     88.30%   2457.7    594.2
    lq_dynamic_wi8_afp32        88.02%   2452.5    695.3
    lq_dynamic_wi4_afp32        87.19%   1512.5   1029.3
    ptq_dynamic                 88.30%   2459.3    573.3
    builtin ptq_int8            87.47%   2258.7    355.3
    builtin ptq_dynamic         88.30%   2459.3    588.5
    builtin ptq_float16         88.02%   4390.7    952.4
    builtin ptq_int16x8         88.30%   2860.2   5787.4
    float32                     88.02%            1001.4

- latency objective: int8_per_channel, 1.003x the fastest front candidate meeting the
  limit (int8_float_fallback): holds;
- size objective: lq_dynamic_wi4_afp32 (1512.5 KB, -0.84 pt), the smallest within 1
  point: holds;
- against the best built-in recipe (ptq_int8): latency 1.041, size 1.176, accuracy +0.84
  points. DOES NOT HOLD: it loses on size. Cause: the three int8 files tied on latency in
  the search (within its 2.5% band), so accuracy decided (latency -> accuracy -> size) and
  per-channel weights are 0.84 points more accurate but 399 KB larger. The search measured
  its own ptq_int8 candidate 10% slower than the per-tensor file (0.474 vs 0.432 of
  float32), outside the band, so it never entered that tie; in the re-benchmark it is the
  fastest file, and int8_per_tensor, the same graph with batch 1, runs 5% slower than it:
  a single trial's spread on this loaded machine is wider than the 2.5% band the search
  measured. The 1.041 latency ratio is inside that 5% spread: a second interleaved run
  of the int8 files alone (600+ runs each, `benchmark.compare`, 1 thread) gave ptq_int8
  308.7 us (its search trial's file 310.9), int8_per_channel 315.2 (1.021), and
  int8_per_tensor 317.4: a tie on latency, a loss on size, a win on accuracy.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import statistics
import sys

from absl import app, flags

import edgekit
from edgekit import benchmark, convert, datasets, errors, evaluate, recipes
from edgekit.config import BenchmarkConfig, EvaluateConfig
from edgekit.lite import digest

NETS = {"mobilenet_v2": "MobileNetV2", "mobilenet_v3_small": "MobileNetV3Small"}
_MODEL = flags.DEFINE_enum("model", "example", ["example", *NETS], "Model to tune.")
_RUNS = flags.DEFINE_integer("num_runs", 300, "Runs per file in the re-benchmark.", lower_bound=2)
_DROP = flags.DEFINE_float("max_accuracy_drop", 1.0, "Accuracy limit, points.", lower_bound=0)
_OUT = flags.DEFINE_string("out", "/tmp/tune_bench", "Where the searches go.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved re-benchmark rounds.", lower_bound=1)

PTQ = [
    "int8_per_tensor", "int8_per_channel", "dynamic", "float16", "float32",
    "int8_float_fallback", "int16x8", "lq_static_wi8_ai8", "lq_dynamic_wi8_afp32",
    "lq_weight_only_wi8_afp32", "lq_dynamic_wi4_afp32", "lq_weight_only_wi4_afp32",
    "ptq_int8", "ptq_dynamic", "ptq_float16", "ptq_int16x8", "lq_static_selective",
]  # fmt: skip
BUILT_IN = ["ptq_int8", "ptq_dynamic", "ptq_float16", "ptq_int16x8"]


def _inputs():
    if _MODEL.value == "example":
        model, _ = datasets.example_model()
        return model, *datasets.load_digits()
    sys.path.insert(0, os.path.dirname(__file__))
    import _digits_nets

    paths = _digits_nets.trained(NETS[_MODEL.value])
    return _digits_nets.load_keras(paths["keras"]), *_digits_nets.digits32()


def main(argv):
    del argv
    model, (x_train, y_train), (x_test, y_test) = _inputs()
    out = pathlib.Path(_OUT.value) / _MODEL.value
    common = dict(
        data=(x_train, y_train), eval_data=(x_test, y_test), output_dir=out,
        max_accuracy_drop=_DROP.value, candidates=PTQ, num_threads=1,
    )  # fmt: skip
    fast = edgekit.tune(model, objective="latency", **common).summary
    small = edgekit.tune(model, objective="size", progress=lambda s: None, **common).summary
    front = json.loads((out / "pareto.json").read_text())
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    files = {
        f["candidate"]: out / "trials" / f["candidate"] / "model.tflite" for f in front["front"]
    }
    files[fast["candidate"]] = (
        out / "best.tflite"
        if fast["candidate"] == small["candidate"]
        else (out / "trials" / fast["candidate"] / "model.tflite")
    )
    # The built-in post-training recipes, converted as edgekit-optimize converts them.
    base_acc = fast["float32"]["accuracy"]
    built = {}
    for name in BUILT_IN:
        cfg = recipes.resolve_recipe(name).convert
        try:
            blob = convert.convert(
                model, cfg, calibration_data=x_train if cfg.mode.needs_calibration else None
            ).tflite_bytes
        except errors.UserInputError as e:  # e.g. int16x8 has no HARD_SWISH kernel
            print(f"builtin {name}: not convertible: {str(e)[:160]}")
            continue
        acc = evaluate.evaluate(blob, (x_test, y_test), config=EvaluateConfig(top_k=(1,))).accuracy
        path = out / f"builtin_{name}.tflite"
        path.write_bytes(blob)
        built[name] = {"path": path, "accuracy": acc, "size_bytes": len(blob)}
    names = [*files, *(f"builtin:{n}" for n in built)]
    paths = dict(zip(names, [*files.values(), *(b["path"] for b in built.values())], strict=True))
    baseline = out / "baseline_float32.tflite"
    chosen = fast["candidate"]
    # Three interleaved re-benchmarks, each in rounds: the front (and the chosen file);
    # the chosen file and every built-in recipe's; then the chosen file against the
    # fastest built-in head to head. Small groups: in one process of a dozen models,
    # the same computation measured up to 18% apart on this machine.
    front_p50 = _rebench(baseline, {n: paths[n] for n in files})
    built_in = {chosen: paths[chosen]} | {n: paths[n] for n in names[len(files) :]}
    built_p50 = _rebench(baseline, built_in)
    p50 = {**built_p50, **front_p50}  # front files: their own group's
    # The re-benchmark's own noise: files that compute the same (graph_sha256) differ by
    # this much within one group.
    graph = {n: digest.graph_sha256(pathlib.Path(q).read_bytes()) for n, q in paths.items()}
    same = []
    for group in (front_p50, built_p50):
        by_graph: dict[str, list[float]] = {}
        for n, v in group.items():
            if n != "float32":
                by_graph.setdefault(graph[n], []).append(v)
        same += [(max(v) - min(v)) / min(v) for v in by_graph.values() if len(v) > 1]
    band = max([fast["noise_band"], *same])
    cfg = _bench_config()
    acc = {
        t["candidate"]: t["measurements"]["accuracy"] for t in trials if t["state"] == "complete"
    }
    size = {
        t["candidate"]: t["measurements"]["size_bytes"] for t in trials if t["state"] == "complete"
    }
    ok = [c for c in files if 100 * (base_acc - acc[c]) <= _DROP.value]
    fastest = min(ok, key=lambda c: p50[c])
    feasible = [c for c in acc if 100 * (base_acc - acc[c]) <= _DROP.value]
    print(f"\n== {_MODEL.value}: float32 accuracy {100 * base_acc:.2f}%, limit -{_DROP.value} pt; "
          f"re-benchmark: {cfg.num_runs}+ runs each, interleaved, 1 thread")  # fmt: skip
    print(f"{'file':34} {'accuracy':>9} {'KB':>8} {'p50 us':>9}")
    for n in names:
        a = acc.get(n) if not n.startswith("builtin:") else built[n[8:]]["accuracy"]
        s = size.get(n) if not n.startswith("builtin:") else built[n[8:]]["size_bytes"]
        print(f"{n:34} {100 * a:8.2f}% {s / 1024:8.1f} {p50[n]:9.1f}")
    print(f"{'float32 (baseline)':34} {100 * base_acc:8.2f}% {'':8} {p50['float32']:9.1f}")
    print(f"same-computation files differ by {', '.join(f'{100 * x:.1f}%' for x in same) or '-'} "
          f"in the re-benchmark ({_ROUNDS.value} rounds); band used below {100 * band:.1f}%")  # fmt: skip
    print(f"latency objective chose {chosen}: p50 {p50[chosen]:.1f} us vs fastest front candidate "
          f"meeting the limit {fastest} {p50[fastest]:.1f} us: ratio {p50[chosen] / p50[fastest]:.3f} "
          f"in the group of {len(files)}")  # fmt: skip
    if fastest != chosen:  # the group's minimum is the luckiest of noisy estimates
        duel = _rebench(baseline, {chosen: paths[chosen], fastest: paths[fastest]})
        print(f"  head to head ({_ROUNDS.value} rounds): {chosen} {duel[chosen]:.1f} us, {fastest} "
              f"{duel[fastest]:.1f} us: ratio {duel[chosen] / duel[fastest]:.3f}"
              + (" (the same computation)" if graph[chosen] == graph[fastest] else ""))  # fmt: skip
    print(f"  the search's noise band: {100 * fast['noise_band']:.1f}%")
    smallest = min(feasible, key=lambda c: size[c])
    print(
        f"size objective chose {small['candidate']} ({size[small['candidate']] / 1024:.1f} KB); "
        f"smallest meeting the limit: {smallest} ({size[smallest] / 1024:.1f} KB)"
    )
    ok_built = [n for n, b in built.items() if 100 * (base_acc - b["accuracy"]) <= _DROP.value]
    if ok_built:
        best = min(ok_built, key=lambda n: p50[f"builtin:{n}"])
        b = built[best]
        duel = _rebench(baseline, {chosen: paths[chosen], f"builtin:{best}": b["path"]})
        p50[f"builtin:{best}"] = duel[f"builtin:{best}"]
        p50[chosen] = duel[chosen]
        lat = duel[chosen] / duel[f"builtin:{best}"]
        print(f"head to head ({_ROUNDS.value} rounds, float32 {duel['float32']:.1f} us): {chosen} "
              f"{duel[chosen]:.1f} us, builtin {best} {duel[f'builtin:{best}']:.1f} us")  # fmt: skip
        verdict = {
            "latency": "tie" if abs(lat - 1) <= band else ("better" if lat < 1 else "worse"),
            "size": _sign(b["size_bytes"] - size[chosen]),
            "accuracy": _sign(acc[chosen] - b["accuracy"]),
        }
        print(f"best built-in recipe {best}: p50 {p50[f'builtin:{best}']:.1f} us, "
              f"{b['size_bytes'] / 1024:.1f} KB, {100 * b['accuracy']:.2f}%; chosen/built-in: latency "
              f"{lat:.3f}, size {size[chosen] / b['size_bytes']:.3f}, accuracy "
              f"{100 * (acc[chosen] - b['accuracy']):+.2f} pt")  # fmt: skip
        wins = [o for o, v in verdict.items() if v == "better"]
        losses = [o for o, v in verdict.items() if v == "worse"]
        print(f"  chosen is {verdict}: beats it on {wins or 'nothing'}, loses on "
              f"{losses or 'nothing'}; the search said {fast.get('built_in_reference', {}).get('chosen_is')}")  # fmt: skip


def _bench_config() -> BenchmarkConfig:
    return BenchmarkConfig(num_runs=_RUNS.value, min_secs=2.0, max_secs=60.0, num_threads=1)


def _rebench(baseline: pathlib.Path, files: dict[str, pathlib.Path]) -> dict[str, float]:
    """p50 per file from `--rounds` interleaved runs with float32 first: per round each
    file's p50 over float32's (drift between rounds cancels), the median over rounds,
    times float32's median p50. Each round runs the files in another (seeded) order: a
    file's time depends on what ran just before it, so a fixed order would bias the
    same files every round."""
    names = list(files)
    ratios: dict[str, list[float]] = {n: [] for n in names}
    base_p50 = []
    rng = random.Random(0)
    for _ in range(_ROUNDS.value):
        order = names[:]
        rng.shuffle(order)
        res = benchmark.compare([baseline, *(files[n] for n in order)], _bench_config())
        base = res.rows[0].latency_us["p50"]
        base_p50.append(base)
        for n, r in zip(order, res.rows[1:], strict=True):
            ratios[n].append(r.latency_us["p50"] / base)
    out = {n: statistics.median(v) * statistics.median(base_p50) for n, v in ratios.items()}
    out["float32"] = statistics.median(base_p50)
    return out


def _sign(x: float) -> str:
    return "better" if x > 0 else ("worse" if x < 0 else "tie")


if __name__ == "__main__":
    app.run(main)
