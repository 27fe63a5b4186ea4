"""The runtime image's payload: what the Dockerfile copies from the builder into the
distroless base. Cold starts on Cloud Run pull the image, so its size is a budget, checked
on the exact binaries `make release` builds (the Dockerfile runs the same command)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUDGET_BYTES = 60_000_000


def copied_binaries() -> list[Path]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copy = re.search(r"^COPY --from=builder (.+) /usr/local/bin/\s*$", dockerfile, re.MULTILINE)
    assert copy, "the Dockerfile copies the binaries from the builder stage in one COPY"
    sources = copy.group(1).split()
    assert all(s.startswith("/src/target/release/") for s in sources), sources
    return [ROOT / "target" / "release" / Path(s).name for s in sources]


def test_the_images_binaries_fit_the_60_mb_budget():
    binaries = copied_binaries()
    assert {b.name for b in binaries} == {"sigma-decrypt", "sigma-dataflow", "sigma-dataform"}
    sizes = {b.name: b.stat().st_size for b in binaries}
    total = sum(sizes.values())
    print(f"image payload: {total / 1e6:.1f} MB {sizes}")
    assert total < BUDGET_BYTES, f"{total / 1e6:.1f} MB > {BUDGET_BYTES / 1e6:.0f} MB: {sizes}"

