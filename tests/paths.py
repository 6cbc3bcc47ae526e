"""Where the tests find the repository, their fixtures and the shared traces (one place, so a test
file can move between folders without counting parents)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
