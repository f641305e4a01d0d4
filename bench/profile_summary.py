"""A py-spy profile (raw collapsed stacks: `frame;frame;... count`, root first, idle
samples left out) summarized two ways: by **owner**, the innermost frame of our code (what
part of the service the CPU was spent for: auth, the request log, the redeem service and
its repositories, the relay) or, with none of ours on the stack, the server or framework
that runs; and by **leaf**, the library whose code was running (pymongo, pydantic, ...).

    python -m bench.profile_summary FILE.txt"""

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Our modules, by the part of a request they serve (path suffixes under phoenix_coupons/).
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "auth (key look-up, JWT)",
        ("api/auth.py", "services/api_keys.py", "adapters/api_key_repo.py", "secrets_box.py"),
    ),
    ("request log and HTTP metrics", ("api/observe.py", "logging.py")),
    (
        "outbox relay (claim, send, delete)",
        ("adapters/outbox_relay.py", "adapters/outbox_failures.py", "adapters/kafka.py"),
    ),
    ("routes, deps, error handlers", ("api/routes/", "api/deps.py", "api/errors.py")),
    ("body limit", ("api/body_limit.py",)),
    ("redeem service and repositories", ("services/", "domain/", "adapters/")),
)
# The process's entry (the whole stack passes through them) and the framework's packages.
ROOTS = ("/phoenix_coupons/cli.py", "/phoenix_coupons/__main__.py")
FRAMEWORK = ("/fastapi/", "/starlette/")
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pymongo, bson (MongoDB client)", ("/pymongo/", "/bson/")),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    ("structlog, logging", ("/structlog/", "/logging/")),
    ("prometheus_client", ("/prometheus_client/",)),
    ("jwt, cryptography, hashlib", ("/jwt/", "/cryptography/", "hashlib")),
    ("fastapi", ("/fastapi/",)),
    ("starlette", ("/starlette/",)),
    ("uvicorn", ("/uvicorn/",)),
    ("h11", ("/h11/",)),
    ("httptools", ("/httptools/",)),
    ("aiokafka", ("/aiokafka/",)),
    ("json", ("/json/",)),
    ("asyncio, uvloop (event loop)", ("/asyncio/", "/uvloop/", "selectors.py")),
    ("our code", ("/phoenix_coupons/", "/schemas/", "/bench/")),
)


@dataclass
class Summary:
    samples: int = 0
    owners: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def lines(self, top: int = 8) -> list[str]:
        def share(n: int) -> str:
            return f"{100 * n / max(1, self.samples):5.1f}%"

        out = [f"    {self.samples} samples (CPU only: waiting is not sampled)", "    by owner:"]
        out += [f"      {share(n)}  {name}" for name, n in self.owners.most_common(top)]
        out.append("    by library running:")
        out += [f"      {share(n)}  {name}" for name, n in self.leaves.most_common(top)]
        out.append("    owner -> library (largest):")
        out += [f"      {share(n)}  {o} -> {lib}" for (o, lib), n in self.pairs.most_common(top)]
        return out


def _file(frame: str) -> str:
    """The frame's file, from a leading "/" (py-spy names them from the import root:
    `pymongo/pool.py`, `phoenix_coupons/api/auth.py`)."""
    found = FRAME.match(frame.strip())
    path = found.group("file") if found else frame
    return path if path.startswith("/") else "/" + path


def _owner(files: list[str]) -> str:
    for at in range(len(files) - 1, -1, -1):  # innermost first
        path = files[at]
        if "/phoenix_coupons/" in path and not path.endswith(ROOTS):
            if any(m in p for p in files[at + 1 :] for m in FRAMEWORK):
                break  # ours only wraps the framework's work (a middleware passing on)
            inner = path.rsplit("/phoenix_coupons/", 1)[1]
            for name, suffixes in OWNERS:
                if any(inner.startswith(s) for s in suffixes):
                    return name
            return f"phoenix_coupons/{inner}"
        if path.endswith("/bench/loadgen.py"):
            return "load generator (bench/loadgen.py)"
    if any("/anyio/" in p or "WorkerThread" in p for p in files):
        return "thread pool (sync dependencies)"
    if any(m in p for p in files for m in FRAMEWORK):
        return "framework (FastAPI, Starlette)"
    if any("/uvicorn/protocols/" in p or "/h11/" in p for p in files):
        return "HTTP server (uvicorn's protocol and parser)"
    if any("/pymongo/" in p for p in files):
        return "pymongo's own tasks (socket writes, reads)"
    return "event loop and other"


def _leaf(files: list[str]) -> str:
    path = files[-1] if files else ""
    for name, marks in LIBRARIES:
        if any(m in path for m in marks):
            return name
    return "other (" + Path(path).name + ")"


def summarize(raw: Path) -> Summary:
    summary = Summary()
    if not raw.exists():
        return summary
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        files = [_file(f) for f in stack.split(";")]
        owner, leaf = _owner(files), _leaf(files)
        summary.samples += n
        summary.owners[owner] += n
        summary.leaves[leaf] += n
        summary.pairs[(owner, leaf)] += n
    return summary


if __name__ == "__main__":
    for text in summarize(Path(sys.argv[1])).lines(top=15):
        print(text)
