"""Tagging on the serving side: `Tag` (texts or token lists -> a tag per token).

Raw texts are tokenised by the model (the rule of `model/words.py`, which the server
also runs in Python to bound a request by its token count before queueing it, when its
characters alone do not bound it);
token lists are tagged as the client split them, sent to the export joined by U+001F.
A request's inputs share one option, whether they are pre-tokenised, so raw and
pre-tokenised requests batch separately.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from model.contract import PRETOKENIZED, SOURCE_TOKENS, TAG, TEXTS
from model.words import PRETOKENIZED_SEPARATOR, has_tokens, tokenize_text
from protos.recur.v1 import recur_pb2
from serving.config import LimitsConfig
from serving.decoding import check_size, check_texts
from serving.errors import invalid
from serving.task import Inputs, Outputs, Row, Task


class TagTask(Task):
    name = TAG.task
    contract = TAG
    methods = ("Tag",)

    def parse(self, method: str, request: recur_pb2.TagRequest, metadata: dict,
              limits: LimitsConfig) -> Inputs:
        if bool(request.texts) == bool(request.token_lists):
            raise invalid("set exactly one of texts (raw text, tokenised by the model) and "
                          "token_lists (your own tokens)"
                          + (", not both" if request.texts else ""))
        if request.texts:
            texts = check_texts(request.texts, limits)
            for i, text in enumerate(texts):
                if not has_tokens(text):
                    raise invalid(f"texts[{i}] has no tokens (only whitespace and control "
                                  "characters)")
            # A text has at most a token per character: most requests need no counting.
            if sum(map(len, texts)) > limits.max_tag_tokens:
                total = 0
                for text in texts:
                    total += len(tokenize_text(text))
                    _check_total("texts", total, limits)
            return Inputs([{TEXTS.name: text} for text in texts], {PRETOKENIZED.name: False})
        _check_total("token_lists", sum(len(t.tokens) for t in request.token_lists), limits)
        return Inputs(self._token_lists(request.token_lists, limits),
                      {PRETOKENIZED.name: True})

    @staticmethod
    def _token_lists(token_lists: Sequence[recur_pb2.TokenList],
                     limits: LimitsConfig) -> list[Row]:
        if len(token_lists) > limits.max_batch_entries:
            raise invalid(f"token_lists has {len(token_lists)} entries; the limit is "
                          f"{limits.max_batch_entries}: split the request")
        rows = []
        for i, token_list in enumerate(token_lists):
            if not token_list.tokens:
                raise invalid(f"token_lists[{i}].tokens is empty: send at least one token")
            for j, token in enumerate(token_list.tokens):
                if not token.strip():
                    raise invalid(f"token_lists[{i}].tokens[{j}] is empty")
                if PRETOKENIZED_SEPARATOR in token:
                    raise invalid(f"token_lists[{i}].tokens[{j}] contains U+001F, which "
                                  "no token may hold")
            joined = PRETOKENIZED_SEPARATOR.join(token_list.tokens)
            check_size(joined, limits, f"token_lists[{i}]")
            rows.append({TEXTS.name: joined})
        return rows

    def respond(self, method: str, request: Message, inputs: Inputs, results: list[Outputs],
                version: int) -> tuple[Message, int]:
        # Built in place from Python lists (of UTF-8 bytes, which string fields take):
        # one TaggedToken per token is the server's largest cost per request after gRPC
        # itself (half of it the numpy scalars).
        response = recur_pb2.TagResponse(model_version=version)
        for outputs in results:
            count = int(outputs[SOURCE_TOKENS])
            add = response.results.add().tokens.add
            for token, tag, probability in zip(outputs["tokens"][:count].tolist(),
                                               outputs["tags"][:count].tolist(),
                                               outputs["probabilities"][:count].tolist(),
                                               strict=True):
                add(token=token, tag=tag, probability=probability)
        return response, sum(len(result.tokens) for result in response.results)

    def labels(self, metadata: dict) -> dict[str, str]:
        created = {"created": str(metadata["created"])} if "created" in metadata else {}
        return super().labels(metadata) | created

    def warm_up(self, metadata: dict, limits: LimitsConfig) -> Inputs:
        return self.parse("Tag", recur_pb2.TagRequest(texts=["Warm up, please."]), metadata,
                          limits)


def _check_total(field: str, total: int, limits: LimitsConfig) -> None:
    if total > limits.max_tag_tokens:
        raise invalid(f"{field} hold {total}+ tokens in all; the limit is "
                      f"{limits.max_tag_tokens} per request: split the request")


TASK = TagTask()
