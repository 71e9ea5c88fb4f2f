"""The model boundary: the `ChatModel` contract and every backend behind it.

Owns talking to models: llama.cpp (llama.py, the only `llama_cpp` import), OpenAI-compatible
servers (openai_compat.py, the only `openai` import), the sentence embedder (embedder.py, the
only `onnxruntime` import) and which weights to load (weights.py). Imports nothing else of the
project; settings, storage and grading live above it.
"""
