"""`python -m phoenix_coupons.docgen`: write the generated pages into docs/."""

from phoenix_coupons.docgen import DOCS, configuration, walkthrough


def main() -> None:
    for page, text in (
        (configuration.PAGE, configuration.render()),
        (walkthrough.PAGE, walkthrough.render()),
    ):
        path = DOCS / page
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")


main()
