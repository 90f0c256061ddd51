"""Test double for `python -m vllm.entrypoints.openai.api_server`: it leaves a file in its TMPDIR
(as vLLM leaves its IPC sockets), records its arguments, environment and process group to
VLLM_DOUBLE_RECORD, then waits for SIGTERM or SIGINT and exits with VLLM_DOUBLE_STATUS (at once,
with VLLM_DOUBLE_EXIT_AT_ONCE: a server that dies by itself)."""

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

status = int(os.environ["VLLM_DOUBLE_STATUS"])
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda *_: sys.exit(status))
tempfile.mkstemp(prefix="ipc-")
record = Path(os.environ["VLLM_DOUBLE_RECORD"])
staging = record.with_name(f".{record.name}.partial")
staging.write_text(
    json.dumps({"argv": sys.argv[1:], "environment": dict(os.environ), "pid": os.getpid(), "group": os.getpgid(0)})
)
os.replace(staging, record)
if os.environ.get("VLLM_DOUBLE_EXIT_AT_ONCE"):
    sys.exit(status)
while True:
    signal.pause()
