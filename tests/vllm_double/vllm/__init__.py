"""Test double for vLLM, found first on the PYTHONPATH of a launcher under test
(tests/test_autointerp_serve.py): only its OpenAI server's module, which serves nothing."""
