"""The distillation loss on packed targets, and the metrics shown while training.

Targets are packed per sample as [label (-1: none), teacher logits, teacher
features...]; the loss mixes Hinton's soft-target term (KL divergence of the
temperature-softened distributions, scaled by T^2) with the hard-label cross
entropy and a feature term (mean squared error through learned projections).

Example:
    >>> loss = make_loss(10, [], temperature=4.0, w_soft=0.7, w_hard=0.3, w_feat=0.0)
"""

from __future__ import annotations

from typing import Any

from edgekit import _compat


def make_loss(
    num_classes: int,
    feat_sizes: list[int],
    *,
    temperature: float,
    w_soft: float,
    w_hard: float,
    w_feat: float,
) -> Any:
    """Per-sample distillation loss on packed targets [label, teacher logits, features]."""
    tf = _compat.tf()
    c, t2 = num_classes, float(temperature) ** 2

    @tf.autograph.experimental.do_not_convert  # plain Python branches on the weights
    def distillation(y_true: Any, y_pred: Any) -> Any:
        y_true = tf.cast(y_true, y_pred.dtype)
        s = y_pred[:, :c]
        total = tf.zeros_like(s[:, 0])
        if w_soft:
            log_t = tf.nn.log_softmax(y_true[:, 1 : 1 + c] / temperature)
            log_s = tf.nn.log_softmax(s / temperature)
            kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
            total += w_soft * t2 * kl
        if w_hard:
            label = y_true[:, 0]
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(tf.maximum(label, 0.0), tf.int32), logits=s
            )
            total += w_hard * tf.where(label >= 0, ce, tf.zeros_like(ce))
        if w_feat and feat_sizes:
            start, terms = c, []
            for size in feat_sizes:
                diff = y_pred[:, start : start + size] - y_true[:, 1 + start : 1 + start + size]
                terms.append(tf.reduce_mean(tf.square(diff), axis=-1))
                start += size
            total += w_feat * tf.add_n(terms) / len(terms)
        return total

    return distillation


def make_metrics(num_classes: int, has_labels: bool) -> list[Any]:
    tf = _compat.tf()
    c = num_classes

    def agreement(y_true: Any, y_pred: Any) -> Any:
        t = tf.argmax(y_true[:, 1 : 1 + c], -1)
        return tf.cast(tf.equal(t, tf.argmax(y_pred[:, :c], -1)), tf.float32)

    def accuracy(y_true: Any, y_pred: Any) -> Any:
        pred = tf.cast(tf.argmax(y_pred[:, :c], -1), tf.float32)
        return tf.cast(tf.equal(pred, tf.cast(y_true[:, 0], tf.float32)), tf.float32)

    return [agreement, accuracy] if has_labels else [agreement]
