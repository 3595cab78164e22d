"""Fails if the built layer bundles what the Lambda python3.12 runtime provides (boto3, botocore,
s3transfer); prints the layer's unzipped size.

Usage: python scripts/check_layer_lean.py .aws-sam/build/SharedLayer
"""

import sys
from pathlib import Path

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")


def unzipped_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def main(layer_dir: str) -> int:
    root = Path(layer_dir)
    if not (root / "python").is_dir():
        print(f"error: {root}/python does not exist; run `sam build` first", file=sys.stderr)
        return 2
    bundled = sorted(
        path.name
        for path in (root / "python").iterdir()
        if path.name.split("-")[0].removesuffix(".py").lower() in RUNTIME_PACKAGES
    )
    for name in bundled:
        print(f"the runtime provides this, the layer must not bundle it: python/{name}", file=sys.stderr)
    verdict = "bundles the runtime's packages" if bundled else f"no {', '.join(RUNTIME_PACKAGES)}"
    print(f"layer {root}: {unzipped_bytes(root) / 1e6:.1f} MB unzipped, {verdict}")
    return 1 if bundled else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build/SharedLayer"))
