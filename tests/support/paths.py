"""Where the repository's files are, for tests at any depth."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = ROOT / "sample_data"
SAMPLE_TICKS = SAMPLE_DATA / "ticks.csv"
README = ROOT / "README.md"
