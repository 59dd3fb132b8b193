"""The exported character LM: prompts in, continuations out, all inside one graph.

encode -> read the prompt -> the one beam search (sampling or by score) -> decode, as a
`tf.Module` whose `generate` function becomes the `generate` signature, with `begin` /
`advance` for serving's step scheduler and a `score` signature (texts -> log-probability
and bits per character). Inputs and outputs are the `GENERATE` and `SCORE` contracts'
(`model/contract.py`).

A prompt is read as BOS followed by its characters, from the model's initial state: the
way training starts every segment, at a line start. The search is fed the last of those
(BOS for an empty prompt) and writes characters only: PAD, UNK and BOS never, and EOS
exactly where an input reaches its `max_length`, at no cost, so that every output has
`max_length` characters and its log-probability is theirs alone.
"""

from __future__ import annotations

import math

import tensorflow as tf

from model.beam_search import BeamSearch
from model.char_lm import CharLM
from model.characters import FIRST_CHAR_ID, Characters
from model.contract import DECODE_STEPS, GENERATE, SCORE, SOURCE_TOKENS
from model.sampling import NEG_INF, sampling
from model.step_functions import DecoderExport
from model.tokenizer import BOS_ID, EOS_ID

LIMIT = "limit"  # the context's key: [batch] characters each input may write


class Generator(DecoderExport):
    """Wraps a trained `CharLM` and its characters for export and offline use.

    Args:
      max_prompt_chars: a longer prompt is read from its last this many characters
        (a recurrent state keeps far less; reading costs time per character).
    """

    streams = True

    def __init__(self, model: CharLM, characters: Characters, max_prompt_chars: int):
        super().__init__("generator", BeamSearch(bos_id=BOS_ID, eos_id=EOS_ID), model,
                         characters)
        self.max_prompt_chars = max_prompt_chars

    @tf.function(input_signature=GENERATE.signature.inputs)
    def generate(self, texts, beam_width, num_hypotheses, max_length, temperature, top_k,
                 top_p, seed):
        """texts [batch] prompts -> texts, scores, log_probs, num_tokens, each [batch, n];
        source_tokens [batch] (prompt characters read) and decode_steps []."""
        batch = tf.shape(texts)[0]
        each = [tf.broadcast_to(option, [batch])
                for option in (max_length, temperature, top_k, top_p, seed)]
        beams, prompt_chars = self._begin(texts, beam_width, *each)
        beams = self.search(beams)
        return {**self.finish(beams, num_hypotheses), SOURCE_TOKENS: prompt_chars,
                DECODE_STEPS: tf.reduce_max(beams.step)}

    @tf.function(input_signature=GENERATE.begin.inputs)
    def begin(self, texts, beam_width, max_length, temperature, top_k, top_p, seed):
        """texts [batch] with per-input options [batch] -> (Beams, prompt chars [batch])."""
        return self._begin(texts, beam_width, max_length, temperature, top_k, top_p, seed)

    def _begin(self, texts, beam_width, max_length, temperature, top_k, top_p, seed):
        prompts = self.tokenizer.encode(texts)[:, -self.max_prompt_chars:]
        read = tf.cast(prompts.row_lengths(), tf.int32)  # [batch]
        batch = tf.shape(read)[0]
        # [BOS, c1 .. cn]: the state after BOS .. c(n-1), then c(n) (or BOS) starts.
        chars = tf.concat([tf.fill([batch, 1], BOS_ID), prompts], axis=1).to_tensor()
        _, state = self.model.read(chars, self.model.initial_state(batch), lengths=read)
        start = tf.gather(chars, read, batch_dims=1)
        max_length = tf.cast(max_length, tf.int32)
        beams = self.beam_search.initialize(
            state, {LIMIT: max_length}, beam_width, tf.zeros([batch]), max_length,
            start_tokens=start, sampling=sampling(temperature, top_k, top_p, seed, batch))
        return beams, read

    def decode_step(self, tokens, state, context, steps):
        """tokens [batch * beam] -> log-probs [batch * beam, vocab] of writable
        characters; EOS (at no cost) only at the input's limit."""
        log_probs, state = self.model.step(tokens, state)
        beam = tf.shape(tokens)[0] // tf.shape(steps)[0]
        at_limit = tf.repeat(steps >= context[LIMIT], beam)[:, None]  # [batch * beam, 1]
        ids = tf.range(tf.shape(log_probs)[-1])[None, :]
        log_probs = tf.where(ids >= FIRST_CHAR_ID, log_probs, NEG_INF)
        return tf.where(tf.logical_and(at_limit, ids == EOS_ID), 0.0, log_probs), state

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        return self.tokenizer.decode(ids)

    @tf.function(input_signature=SCORE.inputs)
    def score(self, texts):
        """texts [batch] -> log_probs, bits_per_char, num_chars, each [batch]: every
        character predicted from BOS and those before it."""
        targets = self.tokenizer.encode(texts)
        lengths = tf.cast(targets.row_lengths(), tf.int32)
        batch = tf.shape(lengths)[0]
        inputs = tf.concat([tf.fill([batch, 1], BOS_ID), targets[:, :-1]], axis=1)
        inputs = inputs.to_tensor()  # [batch, time]; time >= 1 (BOS)
        outputs, _ = self.model.read(inputs, self.model.initial_state(batch), lengths=lengths)
        log_probs = tf.nn.log_softmax(self.model.next_logits(outputs))  # [batch, time, vocab]
        targets = targets.to_tensor(shape=tf.shape(inputs))
        chosen = tf.gather(log_probs, targets, batch_dims=2)  # [batch, time]
        chosen = tf.where(tf.sequence_mask(lengths, tf.shape(targets)[1]), chosen, 0.0)
        total = tf.reduce_sum(chosen, axis=1)
        bits = tf.math.divide_no_nan(-total, tf.cast(lengths, tf.float32) * math.log(2.0))
        return {"log_probs": total, "bits_per_char": bits, "num_chars": lengths}

    def save(self, path) -> None:
        """Writes the SavedModel: `generate` (also `serving_default`) and `score`
        signatures for any TF Serving client, `begin` / `advance` for recur's step
        scheduler."""
        self.save_functions(path, GENERATE, self.generate, self.begin,
                            more_signatures=[(SCORE, self.score)])
