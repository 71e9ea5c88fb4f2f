"""Knowledge documents: the user's own files that answers are grounded in.

Owns turning a file (a path or uploaded bytes) into clean text passages, or refusing it with one
line the user can act on (parse.py). Does not own the documents' rows (store/knowledge.py) or
their vectors (store/vectors.py), nor the model that embeds them (assistant.llm).
"""
