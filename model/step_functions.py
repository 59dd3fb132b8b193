"""What every decoder export shares: the step-level functions, written once.

A decoder's exported module (the translator, and every model kind that decodes with
the one beam search) subclasses `DecoderExport`: it supplies its step function and its
detokenizer; this class runs the search (optionally compiled with XLA), turns finished
hypotheses into n-best outputs, supplies `advance` (see `model/contract.py`) and saves it
with the task's signature and `begin`, traced for any batch, time and source length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from model.beam_search import (
    Beams,
    BeamSearch,
    State,
    finished_rows,
    hypotheses_only,
    select_rows,
    settled,
)
from model.contract import (
    DECODE_STEPS,
    ENDED,
    NBEST,
    PARTIAL_TEXTS,
    STEPS,
    XLA_BUCKET,
    FunctionContract,
    TaskContract,
)
from model.export import portable_kernels


def pad_to_bucket(tensor: tf.Tensor, axis: int) -> tf.Tensor:
    """`tensor` with zeros appended along `axis` up to a multiple of `XLA_BUCKET`."""
    padding = [[0, 0]] * tensor.shape.rank
    padding[axis] = [0, -tf.shape(tensor)[axis] % XLA_BUCKET]
    return tf.pad(tensor, padding)


class DecoderExport(tf.Module):
    """Base of a decoder's exported `tf.Module`: a trained Keras `model` and the
    `tokenizer` of its outputs.

    By default a step is the model's `decode_step` (a `beam_search.StepFn`) and outputs
    are detokenized by the tokenizer's `detokenize`; subclasses may override either.
    They define the task's signature function and `begin` with the input signatures of
    the task's contract, decode with `search`, and call `save_functions`. With `streams`,
    `advance` also returns each input's settled text (`partial_texts`).

    With `xla`, the search loop (and what a subclass passes through `compiled`) is saved
    compiled with XLA, on whatever device runs it: fewer, fused kernels, which pays most
    at small batches, where a step is mostly the cost of launching its ops. XLA compiles
    once per shape, so the output buffer is padded to a multiple of `XLA_BUCKET` steps
    (and `Translator` pads its source alike); each new batch size and beam width still
    costs a compilation of about a second.

    With `bf16_projection` (a trained `RecurrentDecoder` model), the export carries a
    bfloat16 copy of the output projection's kernel and decodes with it: on CPUs with
    AMX (and GPUs with bfloat16 units) the largest product of a step runs several times
    faster, at a cost in precision that changes some outputs, so it is an option (CPUs
    without bfloat16 instructions convert, which may well be slower: not measured here).
    """

    streams = False

    def __init__(self, name: str, beam_search: BeamSearch, model: keras.Model,
                 tokenizer: tf.Module, xla: bool = False, bf16_projection: bool = False):
        super().__init__(name=name)
        self.beam_search = beam_search
        self.xla = xla
        self._loop = self.compiled(self._run)
        self.model = model
        self.projection_kernel = None
        if bf16_projection:
            if not model.projection.built:
                raise ValueError("bf16_projection copies the trained projection's kernel: "
                                 "build (train) the model first")
            self.projection_kernel = tf.Variable(
                tf.cast(model.projection.kernel, tf.bfloat16), trainable=False,
                name="projection_kernel_bf16")
        # Keras tracks some state (dropout seed generators) outside TF's object graph;
        # listing every variable here makes the SavedModel carry all of it.
        self.model_variables = list(model.variables)
        self.tokenizer = tokenizer
        # Traced for any batch, time and source length in `save_functions`, where the
        # specs of the model's state are known.
        self.advance = tf.function(self._advance)

    def decode_step(self, tokens: tf.Tensor, state: State, context: State, steps: tf.Tensor
                    ) -> tuple[tf.Tensor, State]:
        return self.model.decode_step(tokens, state, context, steps, self.projection_kernel)

    def compiled(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function` as it runs in the export: with `xla`, compiled by XLA (its inputs'
        shapes should take few values: see `XLA_BUCKET`)."""
        return tf.function(function, jit_compile=True) if self.xla else function

    def search(self, beams: Beams, max_steps: tf.Tensor | None = None) -> Beams:
        """Steps `beams` until every input has ended or `max_steps` (`BeamSearch.run`);
        with `xla`, in the compiled loop, its output buffer [batch, beam, time] padded to
        a multiple of `XLA_BUCKET` steps (never read past a row's limit)."""
        if self.xla:
            beams = beams._replace(tokens=pad_to_bucket(beams.tokens, axis=2))
        return self._loop(beams, max_steps)

    def _run(self, beams: Beams, max_steps: tf.Tensor | None) -> Beams:
        return self.beam_search.run(self.decode_step, beams, max_steps)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """[batch, (time)] output ids (no specials) -> [batch] strings."""
        return self.tokenizer.detokenize(ids)

    def finish(self, beams: Beams, num_hypotheses: tf.Tensor) -> dict[str, tf.Tensor]:
        """Beams of ended inputs (the model's tensors may be left out, see
        `hypotheses_only`) -> the n-best outputs (`NBEST`), each [batch, n]."""
        result = self.beam_search.finalize(beams, num_hypotheses)
        batch, n = tf.shape(result.lengths)[0], tf.shape(result.lengths)[1]
        flat = tf.RaggedTensor.from_tensor(
            tf.reshape(result.tokens, [batch * n, -1]), lengths=tf.reshape(result.lengths, [-1]))
        texts = tf.reshape(self.detokenize(flat), [batch, n])
        return dict(zip(NBEST, (texts, result.scores, result.log_probs, result.lengths),
                        strict=True))

    def partial_texts(self, beams: Beams) -> tf.Tensor:
        """[batch] each input's settled output so far (see `beam_search.settled`)."""
        tokens, lengths = settled(beams)
        return self.detokenize(tf.RaggedTensor.from_tensor(tokens, lengths=lengths))

    def _advance(self, beams: Beams, max_steps) -> tuple[Beams, dict[str, tf.Tensor]]:
        """Steps every input in `beams` `max_steps` times, or until all have ended.

        An input that ends on the way is stepped on, frozen, to the end of the call (as in
        a batch decode): stopping at each end would cost a call per ended input, and a
        call's fixed cost is that of a step or more for small models.

        Returns the beams and: `ended` [batch] bool, the inputs that ended (all of them:
        the driver drops ended inputs before the next call); `steps` [], steps taken;
        for the ended inputs, `decode_steps` [ended] (the step each ended on) and their
        results with every hypothesis (the driver keeps as many as each asked for);
        `partial_texts` [batch] for tasks that stream.
        """
        after = self.search(beams, max_steps)
        ended = finished_rows(after)
        done = select_rows(hypotheses_only(after), tf.where(ended)[:, 0])
        # Its last hypothesis wrote EOS on the step the input ended: its length is that
        # step's index.
        outputs = {ENDED: ended, STEPS: tf.reduce_max(after.step - beams.step),
                   DECODE_STEPS: tf.reduce_max(done.lengths, axis=1) + 1,
                   **self.finish(done, tf.shape(after.log_probs)[1])}
        if self.streams:
            outputs[PARTIAL_TEXTS] = self.partial_texts(after)
        return after, outputs

    def save_functions(self, path, contract: TaskContract, signature, begin,
                       more_signatures: Sequence[tuple[FunctionContract, Any]] = ()) -> None:
        """Writes the SavedModel: `signature` under the contract's name and as
        `serving_default`, `more_signatures` under their contracts' names, plus `begin`
        and `advance`, with the model's recurrent layers traced with portable (non-cuDNN)
        kernels."""
        assert contract.begin is not None, f"task {contract.task!r} has no step functions"
        with portable_kernels(self.model):
            function = signature.get_concrete_function(*contract.signature.inputs)
            beams, _ = begin.get_concrete_function(*contract.begin.inputs).structured_outputs
            any_shape = tf.nest.map_structure(
                lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), beams)
            self.advance.get_concrete_function(any_shape, tf.TensorSpec([], tf.int32))
            signatures = {contract.signature.name: function, "serving_default": function}
            for more, fn in more_signatures:
                signatures[more.name] = fn.get_concrete_function(*more.inputs)
            tf.saved_model.save(self, str(path), signatures=signatures)
