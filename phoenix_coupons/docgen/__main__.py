"""`python -m phoenix_coupons.docgen`: write the generated pages into docs/."""

from phoenix_coupons.docgen import DOCS, configuration, walkthrough


def main() -> None:
    pages = [(configuration.PAGE, configuration.render())]
    pages += [(page, walkthrough.render(name=script)) for script, page in walkthrough.PAGES.items()]
    for page, text in pages:
        path = DOCS / page
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")


main()
