"""Regenerates the Python protobuf and gRPC stubs from protos/recur/v1/*.proto.

The stubs are committed, so a fresh clone imports without running this; run it
after editing a .proto:  python -m protos.generate
Paths are taken relative to the repository root so that the generated
`*_pb2_grpc.py` imports `protos.recur.v1.recur_pb2`, a real package path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    protos = sorted(p.relative_to(ROOT) for p in (ROOT / "protos").rglob("*.proto"))
    args = ["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={ROOT}", f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}", *map(str, protos)]
    status = protoc.main(args)
    if status == 0:
        print("generated stubs for", ", ".join(map(str, protos)))
    return status


if __name__ == "__main__":
    sys.exit(main())
