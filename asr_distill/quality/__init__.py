"""Label quality, in the order a teacher label goes through it.

- :mod:`.confidence`: the confidence scores of a label (registry; higher is better).
- :mod:`.correct`: light text corrections (loops, stock phrases, lexicon, normaliser).
- :mod:`.rules`: the filter rules, one named function each, and their table ``RULES``.
- :mod:`.threshold`: how the confidence rule's threshold is chosen.
- :mod:`.calibrate`: label WER vs retention per score, against reference transcripts.
- :mod:`.filter`: :func:`~.filter.filter_labels`, the filter stage on records.
- :mod:`.filter_report`: the filter report, its text rendering, and label WER.
- :mod:`.review`: the human review page and the import of its decisions.
- :mod:`.stage`: the filter and review stages from files to files (the CLI and pipeline call these).
"""
