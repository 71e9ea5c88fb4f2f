"""Feedback on answers, in three stages: grading/ scores them, pool/ curates what may be learnt
from, refresh/ fine-tunes, checks and promotes an adapter. Imports only assistant.llm,
assistant.options (the config helpers) and store.
"""
