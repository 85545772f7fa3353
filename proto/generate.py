"""Regenerate the Python code for the `.proto` files in this package.

Run ``python -m proto.generate`` from the repository root (``make proto`` does).
``generate(out_dir)`` is also used by the staleness test, which generates into a
temporary directory and compares with the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent
PROTO_FILES = ("agent.proto", "api.proto")


def generate(out_dir: Path) -> None:
    """Write ``*_pb2.py``, ``*_pb2_grpc.py`` and mypy-protobuf stubs under ``out_dir/proto``.

    Raises RuntimeError naming the protoc exit code if generation fails.
    """
    from grpc_tools import protoc  # dev dependency, imported only here

    include = Path(protoc.__file__).resolve().parent / "_proto"
    plugins = Path(sys.executable).parent  # mypy-protobuf installs its plugins beside python
    (out_dir / "proto").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *(str(Path("proto") / name) for name in PROTO_FILES),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def main() -> int:
    generate(REPO_ROOT)
    print("regenerated:", ", ".join(PROTO_FILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
