"""Synthesis: lessons the model writes from what people taught, graded against their words.

A stage beside grading, pool and refresh. Its parents are human text only (human-written and
human-approved pool entries, never another lesson); its lessons are graded by the product's
own grader with the parent as the reference, and kept only when they pass. The refresh trains
on kept lessons beside the human data (feedback/refresh/rules.py caps them per parent).
"""
