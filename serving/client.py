"""Python client library and CLI for a recur server.

Library:
    with RecurClient("localhost:8500") as client:
        response = client.translate(["In the beginning..."], beam_width=4, num_hypotheses=3)

CLI:
    python -m serving.client --target localhost:8500 translate "In the beginning..."
    python -m serving.client tag "The old man the boats."
    python -m serving.client generate "the company said" --max-chars 300 --seed 7
    python -m serving.client caption cat.png dog.jpg --beam-width 4
    python -m serving.client models
    python -m serving.client health --wait 120
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.recur.v1 import recur_pb2, recur_pb2_grpc


class _CallDetails(collections.namedtuple(
        "_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
        grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        return _CallDetails(details.method, details.timeout,
                            [*(details.metadata or ()), self.header], details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


class RecurClient:
    """A blocking client; every call takes a deadline (`timeout` seconds).

    TLS: pass `tls_ca` (the CA that signed the server's certificate), plus `tls_cert`
    and `tls_key` for mutual TLS. `token` sends a bearer token with every call.
    """

    def __init__(self, target: str = "localhost:8500", timeout: float = 60.0,
                 max_message_bytes: int = 4 * 1024 * 1024, tls_ca: str = "",
                 tls_cert: str = "", tls_key: str = "", token: str = ""):
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls_ca or tls_cert:
            def read(path: str) -> bytes | None:
                return Path(path).read_bytes() if path else None

            credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key),
                                                       read(tls_cert))
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self._connection = self.channel
        if token:
            self.channel = grpc.intercept_channel(self.channel, _BearerToken(token))
        self.stub = recur_pb2_grpc.RecurStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> RecurClient:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def translate(self, texts: list[str], model: str = "", version: int = 0,
                  beam_width: int | None = None, num_hypotheses: int | None = None,
                  length_penalty: float | None = None, max_length: int | None = None,
                  max_length_ratio: float | None = None) -> recur_pb2.TranslateResponse:
        """Translates `texts`; options left as None take the server's defaults."""
        options = decode_options(beam_width=beam_width, num_hypotheses=num_hypotheses,
                                 length_penalty=length_penalty, max_length=max_length,
                                 max_length_ratio=max_length_ratio)
        request = recur_pb2.TranslateRequest(
            model=recur_pb2.ModelSpec(name=model or self.default_model("translate"),
                                      version=version),
            texts=texts, options=options)
        return self.stub.Translate(request, timeout=self.timeout)

    def caption(self, images: Sequence[bytes], model: str = "", version: int = 0,
                errors: bool = False, **options: float | None
                ) -> list[recur_pb2.CaptionResponse | grpc.RpcError]:
        """Captions each encoded image (one request each, all in flight at once);
        `options` are DecodeOptions fields, None = the server's default. An image the
        server refuses raises its grpc.RpcError, or with `errors` takes its place."""
        spec = recur_pb2.ModelSpec(name=model or self.default_model("caption"),
                                   version=version)
        calls = [self.stub.Caption.future(recur_pb2.CaptionRequest(
            model=spec, image=image, options=decode_options(**options)), timeout=self.timeout)
            for image in images]
        answers = []
        for call in calls:
            try:
                answers.append(call.result())
            except grpc.RpcError as error:
                if not errors:
                    raise
                answers.append(error)
        return answers

    def tag(self, texts: Sequence[str] = (), token_lists: Sequence[Sequence[str]] = (),
            model: str = "",
            version: int = 0) -> recur_pb2.TagResponse:
        """Tags raw `texts` (the model tokenises them) or your own `token_lists`."""
        request = recur_pb2.TagRequest(
            model=recur_pb2.ModelSpec(name=model or self.default_model("tag"), version=version),
            texts=texts, token_lists=[recur_pb2.TokenList(tokens=t) for t in token_lists])
        return self.stub.Tag(request, timeout=self.timeout)

    def generate_stream(self, prompt: str, model: str = "", version: int = 0,
                        **options) -> Iterator[recur_pb2.GenerateChunk]:
        """Streams the continuation of `prompt`; `options` are GenerateRequest fields
        (max_chars, temperature, top_k, top_p, seed, beam_width), None = server default."""
        request = recur_pb2.GenerateRequest(
            model=recur_pb2.ModelSpec(name=model or self.default_model("charlm"),
                                      version=version),
            prompt=prompt, **{k: v for k, v in options.items() if v is not None})
        return self.stub.GenerateStream(request, timeout=self.timeout)

    def list_models(self, name: str = "") -> recur_pb2.ListModelsResponse:
        return self.stub.ListModels(recur_pb2.ListModelsRequest(name=name), timeout=self.timeout)

    def default_model(self, task: str) -> str:
        """The first model the server serves for `task` (alphabetically)."""
        for status in self.list_models().models:
            if status.task == task and any(
                    v.state == recur_pb2.ModelVersionStatus.AVAILABLE for v in status.versions):
                return status.name
        raise LookupError(f"the server serves no {task!r} model; pass --model")

    def reachable(self, seconds: float = 2.0) -> bool:
        """Whether a connection to the target can be made within `seconds`."""
        try:
            grpc.channel_ready_future(self._connection).result(timeout=seconds)
        except grpc.FutureTimeoutError:
            return False
        return True

    def wait_until_serving(self, seconds: float, service: str = "") -> None:
        """Polls grpc.health.v1 until `service` ("" = whole server) is SERVING; raises
        TimeoutError saying whether anything answered at all."""
        give_up = time.monotonic() + seconds
        status = None  # the last answer, None while nothing answers
        while True:
            try:
                reply = self.health.Check(health_pb2.HealthCheckRequest(service=service),
                                          timeout=2.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    status = f"{error.code().name}: {error.details()}"
            if time.monotonic() > give_up:
                if status is None:
                    raise TimeoutError(unreachable(self.target, seconds))
                raise TimeoutError(f"{self.target} answered {status} for service "
                                   f"{service!r}, not SERVING, after {seconds:.0f} s")
            time.sleep(0.5)


def decode_options(**options: float | None) -> recur_pb2.DecodeOptions:
    """DecodeOptions with the fields that are not None."""
    return recur_pb2.DecodeOptions(**{k: v for k, v in options.items() if v is not None})


def unreachable(target: str, seconds: float | None = None) -> str:
    waited = f" within {seconds:.0f} s" if seconds else ""
    return (f"nothing answers at {target}{waited}: start the server (python -m serving "
            "--model-base-path EXPORTS) or point --target at it (HOST:PORT)")


def _print_nbest(inputs: Sequence[str], results: Sequence[recur_pb2.NBest | str],
                 version: int | None) -> None:
    """Each input's n-best, or the error (a str) the server answered for it."""
    for i, (name, nbest) in enumerate(zip(inputs, results, strict=True), 1):
        print(f"[{i}] {name}")
        if isinstance(nbest, str):
            print(f"    error: {nbest}")
            continue
        for rank, hyp in enumerate(nbest.hypotheses, 1):
            print(f"    {rank}. score {hyp.score:8.4f}  log_prob {hyp.log_prob:8.3f}  {hyp.text}")
    if version is not None:
        print(f"(model version {version})")


def _print_tags(response: recur_pb2.TagResponse) -> None:
    for i, tagged in enumerate(response.results, 1):
        print(f"[{i}] " + " ".join(f"{t.token}/{t.tag}" for t in tagged.tokens))
        unsure = [f"{t.token}/{t.tag} ({t.probability:.2f})" for t in tagged.tokens
                  if t.probability < 0.9]
        if unsure:
            print(f"    below 0.9: {', '.join(unsure)}")
    print(f"(model version {response.model_version})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="localhost:8500",
                        help="server address HOST:PORT (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="deadline of each call in seconds (default: %(default)s)")
    parser.add_argument("--tls-ca", default="",
                        help="PEM CA of the server's certificate: turns TLS on (default: off)")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    parser.add_argument("--token", default=os.environ.get("RECUR_TOKEN", ""),
                        help="bearer token sent with every call (default: $RECUR_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True)
    tr = commands.add_parser("translate", help="translate texts, print the n-best with scores")
    tr.add_argument("texts", nargs="+", metavar="TEXT")
    _decode_arguments(tr, "translate")
    tr.add_argument("--max-length-ratio", type=float,
                    help="at most ratio x source subwords + 10; 0 = off (default: model's, 2.0)")
    ca = commands.add_parser("caption", help="caption images, print the n-best with scores")
    ca.add_argument("images", nargs="+", metavar="IMAGE_FILE", help="PNG, JPEG or GIF files")
    _decode_arguments(ca, "caption")
    tg = commands.add_parser("tag", help="tag texts, print each token/TAG (and the tags the "
                                         "model is unsure of)")
    tg.add_argument("texts", nargs="+", metavar="TEXT")
    tg.add_argument("--model", default="",
                    help="model name (default: the server's first tag model)")
    tg.add_argument("--version", type=int, default=0, help="pin a version (default: newest)")
    tg.add_argument("--pretokenized", action="store_true",
                    help="each TEXT is already tokenised: split it on whitespace and send "
                         "token lists (default: the model tokenises raw text)")
    ge = commands.add_parser("generate", help="continue a prompt with a character language "
                                              "model, printing the text as it streams")
    ge.add_argument("prompt", nargs="?", default="",
                    help="text to continue (default: empty, the beginning of a text)")
    ge.add_argument("--model", default="",
                    help="model name (default: the server's first charlm model)")
    ge.add_argument("--version", type=int, default=0, help="pin a version (default: newest)")
    ge.add_argument("--max-chars", type=int,
                    help="characters to write, 1..4096 (default: the model's, 200)")
    ge.add_argument("--temperature", type=float,
                    help="sampling temperature in (0, 10] (default: 1.0)")
    ge.add_argument("--top-k", type=int,
                    help="sample among the k most probable characters (default: 0 = all)")
    ge.add_argument("--top-p", type=float,
                    help="sample among the most probable characters holding this much "
                         "probability, (0, 1] (default: 1 = all)")
    ge.add_argument("--seed", type=int,
                    help="random seed: the same seed gives the same text (default: fresh)")
    ge.add_argument("--beam-width", type=int,
                    help="choose the text by beam search of this width instead of sampling "
                         "(default: sample)")
    commands.add_parser("models", help="list the served models, versions and figures")
    hl = commands.add_parser("health", help="check grpc.health.v1 (exit 0 when SERVING)")
    hl.add_argument("--wait", type=float, default=0.0,
                    help="poll up to this many seconds until SERVING (default: %(default)s)")
    hl.add_argument("--service", default="", help='service or model name (default: "" = server)')
    return parser


def _decode_arguments(command: argparse.ArgumentParser, task: str) -> None:
    command.add_argument("--model", default="",
                         help=f"model name (default: the server's first {task} model)")
    command.add_argument("--version", type=int, default=0,
                         help="pin a version (default: newest)")
    command.add_argument("--beam-width", type=int,
                         help="beam width 1..16 (default: server's, 4)")
    command.add_argument("--num-hypotheses", type=int,
                         help="n-best entries per input, at most the beam width (default: 3, "
                              "or the beam width if smaller)")
    command.add_argument("--length-penalty", type=float,
                         help="GNMT alpha 0..2 (default: server's, 0.6)")
    command.add_argument("--max-length", type=int,
                         help="most output subwords (default: the model's)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with RecurClient(args.target, args.timeout, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                     tls_key=args.tls_key, token=args.token) as client:
        try:
            if args.command in ("translate", "caption") and args.num_hypotheses is None:
                args.num_hypotheses = min(3, args.beam_width or 3)
            if args.command == "translate":
                response = client.translate(
                    args.texts, args.model, args.version, args.beam_width,
                    args.num_hypotheses, args.length_penalty, args.max_length,
                    args.max_length_ratio)
                _print_nbest(args.texts, response.results, response.model_version)
            elif args.command == "caption":
                images = [Path(name).read_bytes() for name in args.images]
                answers = client.caption(
                    images, args.model, args.version, errors=True,
                    beam_width=args.beam_width, num_hypotheses=args.num_hypotheses,
                    length_penalty=args.length_penalty, max_length=args.max_length)
                refused = [a for a in answers if isinstance(a, grpc.RpcError)]
                if len(refused) == len(answers):
                    raise refused[0]  # nothing captioned: one error says it (unreachable...)
                # each image's n-best, or why the server refused it
                _print_nbest(args.images, [
                    f"{a.code().name}: {a.details()}" if isinstance(a, grpc.RpcError)
                    else a.result for a in answers],
                    max(a.model_version for a in answers
                        if not isinstance(a, grpc.RpcError)))
                if refused:
                    return 1
            elif args.command == "tag":
                if args.pretokenized:
                    response = client.tag(token_lists=[t.split() for t in args.texts],
                                          model=args.model, version=args.version)
                else:
                    response = client.tag(args.texts, model=args.model, version=args.version)
                _print_tags(response)
            elif args.command == "generate":
                chunks = client.generate_stream(
                    args.prompt, args.model, args.version, max_chars=args.max_chars,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    seed=args.seed, beam_width=args.beam_width)
                for i, chunk in enumerate(chunks):  # the prompt once the model answers
                    print((args.prompt if i == 0 else "") + chunk.text, end="", flush=True)
                print()
            elif args.command == "models":
                print(client.list_models())
            else:
                client.wait_until_serving(args.wait, args.service)
                print("SERVING")
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE and not client.reachable():
                print(f"error: {unreachable(args.target)}", file=sys.stderr)
            else:
                print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        except (LookupError, TimeoutError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
