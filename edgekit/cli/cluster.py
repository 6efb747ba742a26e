r"""edgekit-cluster: cluster a Keras model's weights with TF-MOT, fine-tune, save stripped.

    edgekit-cluster --model=model.keras --data=train.npz --num_clusters=16 \
        --epochs=3 --output=clustered.keras [--json=report.json] \
        [--init=kmeans++|linear|random|density] [--per_channel] [--preserve_sparsity]

The saved model is in the Keras it was given (a Keras 3 model goes through the
checked Keras 3 bridge and comes back as Keras 3), and loads without custom objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common
from edgekit.cli import _train_flags as train
from edgekit.config import ClusterInit

_NUM_CLUSTERS = flags.DEFINE_integer(
    "num_clusters", 16, "Unique values per weight tensor (per channel with --per_channel)."
)
_INIT = flags.DEFINE_enum(
    "init",
    ClusterInit.KMEANS_PLUS_PLUS.value,
    [i.value for i in ClusterInit],
    "Centroid initialisation.",
)
_PER_CHANNEL = flags.DEFINE_bool(
    "per_channel", False, "Cluster each Conv2D output channel separately."
)
_PRESERVE = flags.DEFINE_bool("preserve_sparsity", False, "Keep zero weights zero (after pruning).")
_LAYERS = flags.DEFINE_string("layers", None, "Regex: cluster only layers whose names match.")
_EXCLUDE = flags.DEFINE_string("exclude_layers", None, "Regex: leave matching layers alone.")
_LAYER_TYPES = flags.DEFINE_list("layer_types", [], "Cluster only these layer classes.")
_SKIP_TYPES = flags.DEFINE_list(
    "skip_types", ["DepthwiseConv2D"], "Leave these layer classes alone."
)
_SKIP_FIRST = flags.DEFINE_bool("skip_first", True, "Leave the first layer alone.")
_SKIP_LAST = flags.DEFINE_bool("skip_last", False, "Leave the last layer alone.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit import io
    from edgekit.config import ClusterConfig
    from edgekit.optimize import cluster, keras3

    fit = train.fit_config(cluster.DEFAULT_FIT)
    config = ClusterConfig(
        num_clusters=_NUM_CLUSTERS.value,
        init=_INIT.value,
        per_channel=_PER_CHANNEL.value,
        preserve_sparsity=_PRESERVE.value,
        layers=_LAYERS.value,
        exclude_layers=_EXCLUDE.value,
        layer_types=tuple(_LAYER_TYPES.value),
        skip_types=tuple(_SKIP_TYPES.value),
        skip_first=_SKIP_FIRST.value,
        skip_last=_SKIP_LAST.value,
    )
    model_path = train.model_path()
    train.check_outputs()
    train.start_strategy(fit)
    data = train.load_data(train.data_path(), what="data")
    val = train.load_data(train.val_data_path(), what="val_data") if train.val_data_path() else None
    model = io.load_model(model_path, safe_mode=not train.allow_unsafe())
    stripped, report, failed = train.train(
        cluster.cluster, model, config, data, fit=fit, val_data=val
    )
    if report.bridge:
        print(keras3.describe(report.bridge))
    if train.write_outputs(stripped, report):
        print(
            f"\nWrote {train.output_path()}"
            + (f" and {train.json_path()}" if train.json_path() else "")
        )
    train.print_layers(report, value="unique_values")
    done = [s for s in report.layers if s.compressed]
    print(
        f"{len(done)} layer(s) clustered to at most {config.num_clusters} values"
        + (" per channel" if config.per_channel else "")
        + f"; {report.fit.seconds:.1f} s on {report.fit.num_replicas} replica(s)."
    )
    train.print_validation(report, failed)


def run() -> None:
    _common.run(main, required=("model", "data", "output"), isolate=True)


if __name__ == "__main__":
    run()
