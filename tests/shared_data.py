"""Where the shared real data lives (../shared next to the repository, or $CAPSIM_SHARED), read in place.

The repository ships none of it; tests that need a file skip with the path they looked for when it
is absent, so a missing copy is visible in the test report rather than silently passing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CAPSIM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TRACES = SHARED / "traces"
AZURE_CODE = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
AZURE_CONV = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake_fast25" / "conversation_trace.jsonl.gz"
MOONCAKE_SYNTH = TRACES / "mooncake_fast25" / "synthetic_trace.jsonl.gz"


def need(path: Path) -> Path:
    """``path`` if it exists, else skip the calling test naming the missing file."""
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set CAPSIM_SHARED to the shared folder)")
    return path
