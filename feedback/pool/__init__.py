"""The training pool: which exchanges may be learnt from, PII-masked and de-duplicated.
Owns the verdict rules, the curator, retrieval of past examples, the pool's diversity measures
and the one conversion of a pool entry into a training record (records.py)."""
