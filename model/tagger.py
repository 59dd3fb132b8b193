"""Part-of-speech tagger: words and their characters in, one tag per word out.

The lecture's bidirectional RNN on its motivating case, where a word's tag depends on
the words on both sides: each word is a word embedding (looked up by its normalised
form) beside features of its spelling (a character CNN over it, so unseen words, capitals
and suffixes still count, and optionally the open classes a dictionary allows it,
`model/lexicon.py`, and its Brown cluster and frequency in a large unannotated corpus,
`model/word_clusters.py`, and its pre-trained word vector, `model/word_vectors.py`),
then stacked bidirectional recurrent layers and a softmax over the
tags at each position, or (`--output crf`) a linear-chain CRF over the sequence of tags
(`model/crf.py`). Padding is masked: a token's tag never depends on how long the other
sentences of its batch are.

`TaggerFeatures` turns tokens into the model's inputs inside the graph, for the
training pipeline and the export alike; `TaggerExport` is the SavedModel (the `TAG`
contract): raw or pre-tokenised texts in, tokens, tags and probabilities out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from model.cells import recurrent_layer
from model.config import option
from model.contract import SOURCE_TOKENS, TAG
from model.crf import CRF
from model.export import portable_kernels
from model.gradient_norm import GradientNormModel
from model.lexicon import Lexicon
from model.recurrent_inference import RecurrentInference
from model.word_clusters import WordClusters
from model.word_vectors import WordVectors
from model.words import split_pretokenized, tokenize

PAD_ID, UNKNOWN_ID = 0, 1  # word ids; the vocabulary starts at 2
BEGIN_WORD, END_WORD = 1, 2  # character ids; code points start at 3
CHAR_BUCKETS = 1024
OUTPUTS = ("softmax", "crf")
"""Character ids: 0 pads, 1 and 2 mark a word's ends, code point c < 1020 is id c + 3;
every code point from 1020 (U+03FC) up, rare in English text, shares id 1023."""


@dataclass(frozen=True)
class TaggerConfig:
    """The tagger's hyperparameters (flags of `python -m training.run tag`)."""

    word_dim: int = option(100, "word embedding size")
    char_dim: int = option(32, "character embedding size")
    char_filters: int = option(50, "character CNN filters per kernel width")
    char_widths: str = option("2,3,4", "character CNN kernel widths, comma-separated")
    max_word_chars: int = option(20, "characters read per word (its last ones, which "
                                     "carry the suffix)")
    cell: str = option("lstm", "recurrent cell: lstm, gru or rnn (vanilla)")
    units: int = option(128, "units per direction of each recurrent layer")
    layers: int = option(1, "stacked recurrent layers")
    bidirectional: bool = option(True, "read each sentence both ways (--no-bidirectional: "
                                       "left to right only, the seed's comparison)")
    dropout: float = option(0.3, "dropout on word features and recurrent outputs")
    word_dropout: float = option(0.25, "alpha of frequency-aware word dropout: in training a "
                                       "known word seen n times is read as unknown with "
                                       "probability alpha / (alpha + n), so the character "
                                       "features learn to stand alone on rare words")
    char_encoder: str = option("cnn", "character features: cnn (fast) or bilstm (a "
                                      "character BiLSTM, final states of both directions)")
    char_units: int = option(50, "units per direction of the character BiLSTM")
    lexicon: str = option("wordnet", "dictionary features per word, the open classes "
                                     "(NOUN, VERB, ADJ, ADV) a lexicon allows it and its "
                                     "inflections: wordnet (WordNet 3.1, English) or none")
    clusters: str = option("none", "what a large unannotated English corpus says of each "
                                    "word, its Brown cluster and frequency: spacy "
                                    "(spaCy's English lexeme tables, a 98 MB download "
                                    "once) or none (measured: no gain on Brown's dev "
                                    "files, see the README)")
    cluster_dim: int = option(32, "Brown cluster embedding size")
    vectors: str = option("glove", "pre-trained word vectors, fixed, beside the learnt "
                                   "embedding: glove (GloVe 6B 100-d, 341,479 lower-case "
                                   "English words; a 110 MB download once, about 90 MB of "
                                   "export) or none (a tagger of another language)")
    output: str = option("softmax", "softmax: each word's most probable tag on its own; "
                                    "crf: the most probable sequence of tags, with learnt "
                                    "scores for neighbouring tags (a linear-chain CRF)")

    @property
    def uses_lexicon(self) -> bool:
        return self.lexicon != "none"

    @property
    def uses_clusters(self) -> bool:
        return self.clusters != "none"

    @property
    def uses_vectors(self) -> bool:
        return self.vectors != "none"


def normalize_words(tokens: tf.Tensor) -> tf.Tensor:
    """A token's vocabulary key: lower case, every digit 0 (``1961`` -> ``0000``)."""
    return tf.strings.regex_replace(tf.strings.lower(tokens, encoding="utf-8"), r"\d", "0")


class TaggerFeatures(tf.Module):
    """Tokens -> the model's inputs, in the graph (one implementation for training and
    serving, so they cannot disagree).

    Args:
      vocabulary: normalised words (`normalize_words`) with their own embedding, most
        frequent first; every other word is unknown.
      lexicon: adds `lexicon` features (for a model with `uses_lexicon`).
      clusters: adds `clusters` ids (for a model with `uses_clusters`).
      vectors: adds `vectors` (for a model with `uses_vectors`).
    """

    def __init__(self, vocabulary: Sequence[str], max_word_chars: int,
                 lexicon: Lexicon | None = None, clusters: WordClusters | None = None,
                 vectors: WordVectors | None = None):
        super().__init__(name="tagger_features")
        self.vocabulary_size = len(vocabulary) + 2
        self.max_word_chars = max_word_chars
        self.lexicon, self.clusters, self.vectors = lexicon, clusters, vectors
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(vocabulary), tf.string),
                tf.range(2, len(vocabulary) + 2, dtype=tf.int64)), UNKNOWN_ID)

    def __call__(self, tokens: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        """tokens [batch, (time)] -> `words` [batch, time] int32, what `spelled` gives
        per token ([batch, time, ...]), 0-padded; time is at least 1."""
        flat = tokens.flat_values
        shape = padded_shape(tokens)
        padded = {name: tokens.with_flat_values(values).to_tensor(
                      shape=tf.concat([shape, tf.shape(values, shape.dtype)[1:]], 0))
                  for name, values in self.spelled(flat).items()}
        return {"words": tokens.with_flat_values(self.words(flat)).to_tensor(shape=shape),
                **padded}

    def spelled(self, tokens: tf.Tensor) -> dict[str, tf.Tensor]:
        """tokens [n] -> what depends on the spelling alone: `chars` [n, max_word_chars
        + 2] int32, with a lexicon `lexicon` [n, lexicon.FEATURES] float32, with clusters
        `clusters` [n, word_clusters.FEATURES] int32, with vectors `vectors` [n,
        vectors.features] float32."""
        spelled = {"chars": self.chars(tokens)}
        if self.lexicon is not None:
            spelled["lexicon"] = self.lexicon(tokens)
        if self.clusters is not None:
            spelled["clusters"] = self.clusters(tokens)
        if self.vectors is not None:
            spelled["vectors"] = self.vectors(tokens)
        return spelled

    def words(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] -> word ids [n] int32."""
        return tf.cast(self.table.lookup(normalize_words(tokens)), tf.int32)

    def chars(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] -> character ids [n, max_word_chars + 2] int32: a begin mark, the
        token's last max_word_chars characters, an end mark, 0-padded."""
        points = tf.strings.unicode_decode(tokens, "UTF-8", errors="replace")[
            :, -self.max_word_chars:]
        count = tf.shape(tokens)[0]
        chars = tf.concat([tf.fill([count, 1], BEGIN_WORD),
                           3 + tf.minimum(points, CHAR_BUCKETS - 4),
                           tf.fill([count, 1], END_WORD)], axis=1)
        return chars.to_tensor(shape=[None, self.max_word_chars + 2])


def padded_shape(tokens: tf.RaggedTensor) -> tf.Tensor:
    """[batch, time] of `tokens` padded; time is at least 1 (an RNN needs a step)."""
    return tf.stack([tokens.nrows(), tf.maximum(tf.reduce_max(tokens.row_lengths()), 1)])


@keras.saving.register_keras_serializable(package="recur")
class WordDropout(keras.layers.Layer):
    """In training, reads word id i as unknown with probability alpha / (alpha + n_i),
    n_i its training count (Kiperwasser and Goldberg 2016): rare words often, frequent
    ones almost never."""

    def __init__(self, alpha: float, counts: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.counts = alpha, list(counts)
        self.probability = self.add_weight(
            shape=(len(counts),), trainable=False, name="probability",
            initializer=keras.initializers.Constant(
                [alpha / (alpha + n) if n else 0.0 for n in counts]))
        self.seed = keras.random.SeedGenerator(7)

    def call(self, words, training=False):
        if not training or not self.alpha:
            return words
        draw = keras.random.uniform(keras.ops.shape(words), seed=self.seed)
        drop = draw < keras.ops.take(self.probability, words)
        return keras.ops.where(drop, UNKNOWN_ID, words)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "counts": self.counts}


@keras.saving.register_keras_serializable(package="recur")
class CharCNN(keras.layers.Layer):
    """chars [batch, time, chars] -> [batch, time, filters x widths]: per word, the
    max over positions of each convolution (ReLU), one per kernel width."""

    def __init__(self, char_dim: int, filters: int, widths: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.char_dim, self.filters, self.widths = char_dim, filters, tuple(widths)
        self.embedding = keras.layers.Embedding(CHAR_BUCKETS, char_dim, name="char_embedding")
        self.convolutions = [keras.layers.Conv1D(filters, width, padding="same",
                                                 activation="relu", name=f"char_conv{width}")
                             for width in self.widths]

    def call(self, chars):
        shape = keras.ops.shape(chars)
        flat = self.embedding(keras.ops.reshape(chars, (-1, shape[2])))  # [words, chars, d]
        pooled = [keras.ops.max(conv(flat), axis=1) for conv in self.convolutions]
        return keras.ops.reshape(keras.ops.concatenate(pooled, axis=-1),
                                 (shape[0], shape[1], self.filters * len(self.widths)))

    def get_config(self) -> dict:
        return {**super().get_config(), "char_dim": self.char_dim, "filters": self.filters,
                "widths": self.widths}


@keras.saving.register_keras_serializable(package="recur")
class CharBiLSTM(keras.layers.Layer):
    """chars [batch, time, chars] -> [batch, time, 2 x units]: per word, the final states
    of a BiLSTM over its characters (padding masked)."""

    def __init__(self, char_dim: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.embedding = keras.layers.Embedding(CHAR_BUCKETS, char_dim, mask_zero=True,
                                                name="char_embedding")
        self.lstm = keras.layers.Bidirectional(keras.layers.LSTM(units), name="char_bilstm")

    def call(self, chars):
        shape = keras.ops.shape(chars)
        flat = keras.ops.reshape(chars, (-1, shape[2]))
        # Padding words (all 0) would give the LSTM no step at all: give them one.
        flat = keras.ops.where(keras.ops.any(flat > 0, axis=1, keepdims=True), flat,
                               keras.ops.ones_like(flat) * keras.ops.cast(
                                   keras.ops.arange(shape[2]) == 0, flat.dtype))
        states = self.lstm(self.embedding(flat), mask=flat > 0)
        return keras.ops.reshape(states, (shape[0], shape[1], 2 * self.units))

    def get_config(self) -> dict:
        return {**super().get_config(), "char_dim": self.embedding.output_dim,
                "units": self.units}


CHAR_ENCODERS = ("cnn", "bilstm")


@keras.saving.register_keras_serializable(package="recur")
class Tagger(GradientNormModel):
    """{"words": [batch, time], "chars": [batch, time, chars], with `uses_lexicon` also
    "lexicon": [batch, time, lexicon.FEATURES], with `uses_clusters` also "clusters"
    [batch, time, word_clusters.FEATURES], with `uses_vectors` also "vectors" [batch, time,
    WordVectors.features]} -> logits [batch, time, tags] (float32),
    masked where words is padding. The export runs `ragged_scores` instead: the same
    scores from what `self.spelling` makes of a token's spelling, which it stores.

    Args:
      word_counts: training count of each word id (0 for padding and unknown).
      cluster_ids: how many ids each `clusters` feature has (`WordClusters.
        vocabulary_sizes`), with `uses_clusters`.
    """

    def __init__(self, word_counts: Sequence[int], num_tags: int, config: TaggerConfig,
                 cluster_ids: Sequence[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.word_counts, self.num_tags, self.config = list(word_counts), num_tags, config
        self.cluster_ids = list(cluster_ids)
        # Cluster, cluster prefix, frequency bucket: one embedding each (none without).
        dims = (config.cluster_dim, 8, 8) if config.uses_clusters else ()
        self.cluster_embeddings = [
            keras.layers.Embedding(size, dim, name=f"cluster_embedding{i}")
            for i, (size, dim) in enumerate(zip(self.cluster_ids, dims, strict=True))]
        self.word_dropout = WordDropout(config.word_dropout, self.word_counts)
        self.word_embedding = keras.layers.Embedding(len(self.word_counts), config.word_dim,
                                                     mask_zero=True, name="word_embedding")
        if config.char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"char_encoder must be one of {CHAR_ENCODERS}, got "
                             f"{config.char_encoder!r}")
        self.chars = (CharCNN(config.char_dim, config.char_filters,
                              [int(w) for w in config.char_widths.split(",")])
                      if config.char_encoder == "cnn"
                      else CharBiLSTM(config.char_dim, config.char_units))
        self.input_dropout = keras.layers.Dropout(config.dropout)
        self.recurrent = []
        for i in range(config.layers):
            layer = recurrent_layer(config.cell, config.units, return_sequences=True,
                                    name=f"{config.cell}{i}")
            self.recurrent.append(keras.layers.Bidirectional(layer, name=f"bi{config.cell}{i}")
                                  if config.bidirectional else layer)
        self.output_dropout = keras.layers.Dropout(config.dropout)
        self.classify = keras.layers.Dense(num_tags, dtype="float32", name="tags")
        if config.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {config.output!r}")
        self.crf = CRF(num_tags, name="crf") if config.output == "crf" else None

    def build(self, input_shape: dict) -> None:
        """Creates every sublayer's weights by tagging one padding token (Keras builds a
        subclassed model this way before it trains; unbuilt, it warns)."""
        self.call({name: tf.zeros([dim or 1 for dim in shape], tf.int32)
                   for name, shape in input_shape.items()})

    def call(self, inputs, training=False):
        words = self.word_dropout(inputs["words"], training=training)
        mask = inputs["words"] != PAD_ID
        features = keras.ops.concatenate(
            [self.word_embedding(words), keras.ops.cast(self.spelling(inputs),
                                                        self.compute_dtype)],
            axis=-1)
        hidden = self.input_dropout(features, training=training)
        for layer in self.recurrent:
            hidden = self.output_dropout(layer(hidden, mask=mask, training=training),
                                         training=training)
        return self.classify(hidden)

    def ragged_scores(self, words: tf.RaggedTensor, spelling: tf.RaggedTensor,
                      recurrent: RecurrentInference) -> tf.RaggedTensor:
        """`call` for inference on ragged batches, `recurrent` running `self.recurrent`
        (the same numbers in less time): words [batch, (time)], spelling [batch, (time),
        features] -> scores [batch, (time), tags]."""
        features = keras.ops.concatenate(
            [self.word_embedding(words.flat_values),
             keras.ops.cast(spelling.flat_values, self.compute_dtype)], axis=-1)
        hidden = recurrent(words.with_flat_values(features))
        return words.with_flat_values(self.classify(hidden.flat_values))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """With a CRF: the negative log-likelihood of each gold tag sequence, per token
        (the compiled per-token loss otherwise)."""
        if self.crf is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        mask = x["words"] != PAD_ID
        likelihood = self.crf.log_likelihood(y_pred, y, mask)
        loss = -tf.reduce_sum(likelihood) / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)),
                                                       1.0)
        return loss + tf.add_n(self.losses) if self.losses else loss

    def best_tags(self, scores: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """scores [batch, time, tags] (`call`'s) -> each token's tag [batch, time] int32
        and its probability: the softmax's best, or the CRF's best sequence and each of
        its tags' marginal probability."""
        if self.crf is None:
            probabilities = tf.nn.softmax(scores)
            return (tf.argmax(probabilities, axis=-1, output_type=tf.int32),
                    tf.reduce_max(probabilities, axis=-1))
        best = self.crf.decode(scores, mask)
        return best, tf.gather(self.crf.marginals(scores, mask), best, batch_dims=2)

    def spelling(self, inputs: dict) -> tf.Tensor:
        """`chars` (and `lexicon`, `clusters`, `vectors`) [batch, time, ...] -> what the
        model reads of a token's spelling [batch, time, features]: its character features
        (and lexicon bits, cluster embeddings, word vector). The same for every occurrence
        of a spelling, so the export stores it."""
        parts = [self.chars(inputs["chars"])]
        if self.config.uses_lexicon:
            parts.append(keras.ops.cast(inputs["lexicon"], parts[0].dtype))
        # The same embeddings for the token as written and for its lower case.
        per_casing = len(self.cluster_embeddings)
        parts += [embedding(inputs["clusters"][..., casing * per_casing + i])
                  for casing in range(2)
                  for i, embedding in enumerate(self.cluster_embeddings)]
        if self.config.uses_vectors:
            parts.append(keras.ops.cast(inputs["vectors"], parts[0].dtype))
        return keras.ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def compute_mask(self, inputs, previous_mask=None):
        return inputs["words"] != PAD_ID

    def get_config(self) -> dict:
        return {**super().get_config(), "word_counts": self.word_counts,
                "num_tags": self.num_tags, "config": dataclasses.asdict(self.config),
                "cluster_ids": self.cluster_ids}

    @classmethod
    def from_config(cls, config: dict) -> Tagger:
        hyper = TaggerConfig(**config.pop("config"))
        return cls(config.pop("word_counts"), config.pop("num_tags"), hyper, **config)


class TaggerExport(tf.Module):
    """The SavedModel of a trained `Tagger`: the `TAG` contract's signature.

    Args:
      spellings: tokens (as written) whose spelling features (`Tagger.spelling`) are
        computed once, here, and stored in the export (the training text's frequent
        spellings: nearly every token served); the others' are computed per request,
        once per distinct token of a batch. The same numbers either way, for less work
        per token.
    """

    def __init__(self, model: Tagger, features: TaggerFeatures, tags: Sequence[str],
                 spellings: Sequence[str]):
        super().__init__(name="tagger")
        self.model = model
        self.model_variables = list(model.variables)  # Keras state outside TF's graph
        self.features = features
        if not model.built:  # never called (untrained, in tests): make its weights
            model(features(tf.ragged.constant([["."]])))
        self.recurrent = RecurrentInference(model.recurrent)
        self.tags = tf.constant(list(tags))
        spellings = list(spellings)
        self.spellings = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(spellings, tf.string), tf.range(len(spellings), dtype=tf.int64)), -1)
        self.spelling_features = tf.Variable(
            tf.concat([self._spelling(tf.constant(spellings[i:i + 4096], tf.string))
                       for i in range(0, max(len(spellings), 1), 4096)], 0),
            trainable=False, name="spelling_features")

    def _spelling(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] -> spelling features [n, features] float32."""
        inputs = {name: values[None] for name, values in self.features.spelled(tokens).items()}
        return tf.cast(self.model.spelling(inputs)[0], tf.float32)

    @tf.function(input_signature=TAG.signature.inputs)
    def tag(self, texts, pretokenized):
        """texts [batch] (raw, or tokens joined by U+001F when `pretokenized`) ->
        `tokens`, `tags` [batch, time] string and `probabilities` [batch, time] float32,
        padded with "" and 0 after each input's `source_tokens` [batch] int32."""
        tokens = tf.cond(pretokenized, lambda: split_pretokenized(texts),
                         lambda: tokenize(texts).with_row_splits_dtype(tf.int64))
        shape = padded_shape(tokens)
        scores = self.model.ragged_scores(
            tokens.with_flat_values(self.features.words(tokens.flat_values)),
            tokens.with_flat_values(self._batch_spelling(tokens.flat_values)),
            self.recurrent).to_tensor(shape=tf.concat([shape, [self.model.num_tags]], 0))
        lengths = tf.cast(tokens.row_lengths(), tf.int32)
        real = tf.sequence_mask(lengths, shape[1])
        best, probabilities = self.model.best_tags(scores, real)
        return {
            "tokens": tokens.to_tensor("", shape=shape),
            "tags": tf.where(real, tf.gather(self.tags, best), ""),
            "probabilities": tf.where(real, probabilities, 0.0),
            SOURCE_TOKENS: lengths,
        }

    def _batch_spelling(self, tokens: tf.Tensor) -> tf.Tensor:
        """tokens [n] -> spelling features [n, features]: stored ones for known
        spellings, computed once per distinct other token."""
        row = self.spellings.lookup(tokens)
        known = row >= 0
        unknown = tf.where(~known)[:, 0]
        distinct, which = tf.unique(tf.gather(tokens, unknown))
        computed = self._spelling(distinct)
        stored = tf.gather(self.spelling_features, tf.maximum(row, 0))
        spread = tf.scatter_nd(unknown[:, None], tf.gather(computed, which),
                               tf.shape(stored, out_type=tf.int64))
        return tf.where(known[:, None], stored, spread)

    def save(self, path) -> None:
        """Writes the SavedModel: `tag` (also `serving_default`)."""
        with portable_kernels(self.model):
            function = self.tag.get_concrete_function(*TAG.signature.inputs)
            tf.saved_model.save(self, str(path), signatures={TAG.signature.name: function,
                                                             "serving_default": function})
