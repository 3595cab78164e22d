"""Fails unless every native library in the built layer is an aarch64 ELF (the functions run on arm64).

Usage: python scripts/check_layer_arch.py .aws-sam/build/SharedLayer
"""

import struct
import sys
from pathlib import Path

EM_AARCH64 = 183
ELF_MAGIC = b"\x7fELF"


def machine_of(path: Path) -> int | None:
    """The ELF e_machine of a file, or None if it is not an ELF file."""
    with path.open("rb") as stream:
        header = stream.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(byte_order + "H", header[18:20])
    return int(machine)


def main(layer_dir: str) -> int:
    root = Path(layer_dir)
    if not root.is_dir():
        print(f"error: {root} does not exist; run `sam build` first", file=sys.stderr)
        return 2
    libraries = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name))
    wrong = [(p, machine_of(p)) for p in libraries if machine_of(p) != EM_AARCH64]
    for path, machine in wrong:
        print(f"not aarch64 (e_machine={machine}): {path.relative_to(root)}", file=sys.stderr)
    print(f"{len(libraries)} native libraries in {root}, {len(libraries) - len(wrong)} aarch64")
    return 1 if wrong or not libraries else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build/SharedLayer"))
