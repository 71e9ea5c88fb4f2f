"""Grading: every answer scored by a judge and uncertainty signals, flagged when likely wrong.
Owns the signals, the judge prompt, the injection guards, the combination rule and the queue
worker; storage of grades and jobs is store/grading.py's."""
