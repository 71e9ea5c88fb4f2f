"""Feedback on answers: grading, curation and the fine-tune refresh (later issues build here)."""
