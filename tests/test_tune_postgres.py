"""Two edgekit-tune workers share one study in a real PostgreSQL server.

The server comes from Debian's `postgresql` package, installed and started by
.ci/postgres_setup.sh (which .ci/run calls). Without it the test skips locally and
fails in CI (CI=true), so a missing install step cannot hide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_tune import FAST, THREE, inputs  # noqa: F401 - the shared tiny model and data

URL = os.environ.get(
    "EDGEKIT_TEST_POSTGRES_URL", "postgresql://edgekit:edgekit@127.0.0.1:5432/edgekit_tune"
)

# One worker: imports everything, waits at a file barrier so both start together,
# then joins the study.
_WORKER = """
import pathlib, sys, time
import edgekit, edgekit.tuning.search, tensorflow
from edgekit import config
ready = pathlib.Path(sys.argv[2])
ready.joinpath(sys.argv[3]).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.05)
m, tr, te = sys.argv[4:7]
edgekit.tune(m, data=tr, eval_data=te, output_dir=sys.argv[1], storage=sys.argv[7],
             max_accuracy_drop=1.0, heartbeat_seconds=1, candidates=%r,
             benchmark=config.BenchmarkConfig(**%r))
"""


@pytest.fixture(scope="module")
def postgres():
    try:
        import psycopg2

        psycopg2.connect(URL, connect_timeout=5).close()
    except Exception as e:  # noqa: BLE001 - not installed, not running, no role...
        message = f"no PostgreSQL server at {URL} (run .ci/postgres_setup.sh): {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import optuna

    from edgekit.tuning import study

    storage = optuna.storages.RDBStorage(study.engine_url(URL))
    for s in optuna.get_all_study_summaries(storage):  # a fresh study every run
        optuna.delete_study(study_name=s.study_name, storage=storage)
    return URL


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(postgres, inputs, tmp_path):  # noqa: F811
    ready = tmp_path / "ready"
    ready.mkdir()
    bench = {k: v for k, v in FAST.to_dict().items() if k in ("num_runs", "min_secs", "max_secs")}
    script = _WORKER % (THREE, bench)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                str(tmp_path / f"w{i}"),
                str(ready),
                str(i),
                inputs["model"],
                inputs["train"],
                inputs["test"],
                postgres,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    records = [
        json.loads(line) for line in (tmp_path / "w0" / "trials.jsonl").read_text().splitlines()
    ]
    done = [r["candidate"] for r in records if r["state"] == "complete"]
    assert sorted(done) == sorted(THREE)  # every candidate measured exactly once
    assert len({r["worker"] for r in records if r["state"] == "complete"}) == 2
    summaries = [json.loads((tmp_path / f"w{i}" / "summary.json").read_text()) for i in range(2)]
    assert summaries[0]["candidate"] == summaries[1]["candidate"]
    assert summaries[0]["storage"].startswith("postgresql://edgekit:***@")
    best = [(tmp_path / f"w{i}" / "best.tflite").read_bytes() for i in range(2)]
    assert best[0] == best[1]
