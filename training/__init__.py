"""Corpora, tf.data pipelines, training configs, `python -m training.run`, evaluation."""
