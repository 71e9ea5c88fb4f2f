"""Feedback on answers: self-grading now; curation and the fine-tune refresh build here next."""
