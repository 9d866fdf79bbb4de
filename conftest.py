"""Options for the whole test suite."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="Rewrite the golden files from the current code (the run still fails once, "
        "so that the new files are reviewed as a diff before they pass).",
    )
