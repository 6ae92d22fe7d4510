#!/usr/bin/env python3
"""What the image build promises, read from the Dockerfile with the official
parser (BuildKit's, through the `dockerfile` package), since no Docker engine
runs here to build it:

- every stage that runs commands runs on the build machine's platform
  (`FROM --platform=$BUILDPLATFORM`), and the last stage runs nothing, so a
  multi-platform build cross-compiles and emulates nothing;
- the dependencies are compiled (`cargo chef cook`) after copying only the
  recipe, and the sources are copied after that: a source change reuses the
  dependency layer;
- hero-host is built for the Rust target of $TARGETARCH, both amd64 and
  arm64 are handled, with a linker and C compiler per target;
- the image runs hero-host as a numeric non-root user, with the component at
  the path spin.toml names and the state volume at /data;
- .dockerignore keeps target/ and .git out of the build context.

Usage: check_dockerfile.py <repository root>. Exit status 1 on a failure.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import dockerfile


def stages(commands) -> list[list]:
    out: list[list] = []
    for command in commands:
        if command.cmd == "FROM":
            out.append([command])
        elif out:
            out[-1].append(command)
    return out


def text(command) -> str:
    return " ".join(command.value)


def check(root: Path) -> list[str]:
    problems = []
    all_stages = stages(dockerfile.parse_file(str(root / "Dockerfile")))
    *builders, final = all_stages
    for stage in builders:
        name = text(stage[0])
        runs = [c for c in stage if c.cmd == "RUN"]
        parent_is_stage = stage[0].value[0] in {s[0].value[-1] for s in builders if len(s[0].value) == 3}
        if runs and "--platform=$BUILDPLATFORM" not in stage[0].flags and not parent_is_stage:
            problems.append(f"stage {name!r} runs commands but not on $BUILDPLATFORM (emulation)")
    if any(c.cmd == "RUN" for c in final):
        problems.append("the last stage has RUN steps: they would run emulated on the other platform")

    build = next((s for s in builders if s[0].value[-1] == "build"), None)
    if build is None:
        return problems + ["no stage named build"]
    cook = next((i for i, c in enumerate(build) if c.cmd == "RUN" and "cargo chef cook" in text(c)), None)
    sources = next((i for i, c in enumerate(build) if c.cmd == "COPY" and c.value == (".", ".")), None)
    if cook is None or sources is None or sources < cook:
        problems.append("the build stage does not cook the dependencies before copying the sources")
    else:
        early = [text(c) for c in build[:cook] if c.cmd in ("COPY", "ADD") and "recipe.json" not in text(c)]
        if early:
            problems.append(f"files copied before the dependency layer invalidate it: {early}")
    script = " ".join(text(c) for c in build if c.cmd in ("RUN", "ENV"))
    for arch, triple in (("amd64", "x86_64-unknown-linux-gnu"), ("arm64", "aarch64-unknown-linux-gnu")):
        if f"{arch})" not in script or triple not in script:
            problems.append(f"TARGETARCH {arch} is not mapped to the Rust target {triple}")
        variable = "CARGO_TARGET_" + triple.upper().replace("-", "_") + "_LINKER"
        if variable not in script or "CC_" + triple.replace("-", "_") not in script:
            problems.append(f"no linker and C compiler for {triple} ({variable}, CC_...)")
    if '--target "$target" -p hero-host' not in script and "--target \"$(cat /rust-target)\" -p hero-host" not in script:
        problems.append("hero-host is not built for the target's Rust triple")

    manifest = tomllib.loads((root / "spin.toml").read_text())
    wasm = next(iter(manifest["component"].values()))["source"]
    if f"target/wasm32-wasip2/release/{Path(wasm).name}" not in script or f"/out/app/{Path(wasm).parent}" not in script:
        problems.append(f"the component is not copied to the path spin.toml names ({wasm})")
    user = next((c for c in reversed(final) if c.cmd == "USER"), None)
    if user is None or not re.fullmatch(r"[1-9]\d*(:\d+)?", text(user)):
        problems.append("the image does not run as a numeric non-root user")
    entry = next((c for c in final if c.cmd == "ENTRYPOINT"), None)
    if entry is None or entry.value[:2] != ("/usr/local/bin/hero-host", "up"):
        problems.append("the entrypoint is not hero-host up")
    env = dict(zip(*[iter(next((c.value for c in final if c.cmd == "ENV"), ()))] * 2))
    if env.get("HERO_HOST_STATE_DIR") != "/data" or not any(c.cmd == "VOLUME" and "/data" in c.value for c in final):
        problems.append("the state dir is not the volume /data")

    ignored = {line.strip() for line in (root / ".dockerignore").read_text().splitlines()}
    for entry_name in ("target", ".git"):
        if entry_name not in ignored:
            problems.append(f".dockerignore does not exclude {entry_name}")
    return problems


def main() -> int:
    problems = check(Path(sys.argv[1]))
    for problem in problems:
        print(f"FAIL Dockerfile: {problem}")
    if not problems:
        print("ok   Dockerfile: builders on $BUILDPLATFORM, nothing run in the last stage, dependencies cooked "
              "before the sources, amd64 and arm64 cross targets, non-root hero-host with the component")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
