"""The refresh: a LoRA fine-tuned on the pool, exported for llama.cpp, checked, promoted if better.
Owns the guards (rules.py), the promotion gates (gates.py), the crash-safe pipeline
(pipeline.py), training (train.py, the only torch/trl/peft import), GGUF export
(gguf_export.py, the only gguf import) and the candidate's evaluation."""
