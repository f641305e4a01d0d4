"""docs/walkthrough.md from docs/walkthrough.sh, and docs/lifecycle.md from docs/lifecycle.sh:
each script is its page. Its `#>` lines are the page's prose (Markdown); every other run of
lines is a shell block, as the test runs it."""

from phoenix_coupons.docgen import DOCS

SCRIPT = "walkthrough.sh"
PAGE = "walkthrough.md"
# Each script run by tests/e2e/test_walkthrough.py, and the page generated from it.
PAGES = {SCRIPT: PAGE, "lifecycle.sh": "lifecycle.md", "campaign.sh": "campaign.md"}
PROSE = "#>"


def header(script: str) -> str:
    return f"<!-- Generated from {script} by `make docs`: edit the script, not this page. -->\n\n"


def render(script: str | None = None, name: str = SCRIPT) -> str:
    """The page of the script `name` (its text `script`, else the file's)."""
    text = (DOCS / name).read_text() if script is None else script
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    out: list[str] = []
    code: list[str] = []

    def flush() -> None:
        while code and not code[-1].strip():
            code.pop()
        while code and not code[0].strip():
            code.pop(0)
        if code:
            if out and out[-1]:
                out.append("")
            out.extend(["```sh", *code, "```", ""])
        code.clear()

    for line in lines:
        if line == PROSE or line.startswith(PROSE + " "):
            flush()
            out.append(line[len(PROSE) + 1 :])
        else:
            code.append(line)
    flush()
    while out and not out[-1]:
        out.pop()
    return header(name) + "\n".join(out) + "\n"
