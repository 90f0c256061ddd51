"""What delphi 0.1.3 needs to run here: import it without vLLM, and two fixes for transformers 5.

- `delphi.explainers`/`delphi.scorers` import `delphi.clients`, whose offline client imports vLLM at
  module level. vLLM lives in its own environment (envs/vllm.yaml), so where it is absent a stand-in
  module is installed that fails only when delphi's offline client is actually used.
- transformers 5 `batch_decode` of a 1-D sequence returns one string, where delphi expects one
  string per token: prompts would highlight nothing and fuzzing AUROC collapse to 0.5 silently.
- transformers 5 `apply_chat_template(tokenize=True)` returns a BatchEncoding, which vLLM rejects
  in delphi's offline client; it needs the plain token ids.
Both fixes live in `DelphiTokenizer`, which wraps the tokenizer handed to delphi; delphi is not
patched.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

import torch

# Names delphi.clients.offline imports from vLLM.
_VLLM_NAMES = {
    "vllm": ("LLM", "SamplingParams"),
    "vllm.distributed": (),
    "vllm.distributed.parallel_state": ("destroy_distributed_environment", "destroy_model_parallel"),
    "vllm.inputs": ("TokensPrompt",),
}


def _vllm_missing(*_args: Any, **_kwargs: Any):
    raise ImportError(
        "vLLM is not installed in this environment: delphi's offline client needs it; the workflow "
        "talks to a vLLM server in its own environment instead (envs/vllm.yaml)"
    )


def import_delphi() -> None:
    """Make `import delphi.explainers, delphi.scorers` work where vLLM is not installed."""
    if "vllm" in sys.modules or importlib.util.find_spec("vllm") is not None:
        return
    for name, attributes in _VLLM_NAMES.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so its submodules can be imported
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        for attribute in attributes:
            setattr(module, attribute, _vllm_missing)
        sys.modules[name] = module


class DelphiTokenizer:
    """A tokenizer as delphi 0.1.3 expects it under transformers 5 (everything else passes through)."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        if isinstance(sequences, torch.Tensor) and sequences.dim() == 1:
            sequences = sequences.tolist()
        if len(sequences) and not isinstance(sequences[0], (list, tuple, torch.Tensor)):
            return [self._tokenizer.decode([token], **kwargs) for token in sequences]  # one string per token
        return self._tokenizer.batch_decode(sequences, **kwargs)

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        if kwargs.get("tokenize", True):
            kwargs.setdefault("return_dict", False)
        return self._tokenizer.apply_chat_template(conversation, **kwargs)
