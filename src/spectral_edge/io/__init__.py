"""Input and output: everything that touches a file.

- :mod:`.checkpoints` (and its private readers): safetensors, Hugging Face folders, torch
  files with ``weights_only=True``, distributed checkpoints, read tensor by tensor;
- :mod:`.history`: the monitor's crash-safe JSON-lines history (writer and reader);
- :mod:`.tables`: ``analyze`` tables (parquet, CSV, JSON lines);
- :mod:`.run`: the run model, the one reader of a *run* (a folder, a history, a table, a
  Trainer output folder) that the analyses, the report, the experiments and the CLI share.
  It sits here, after the detectors in the data flow, because reading a run applies their
  definitions (the grok step, the primary window) rather than making its own.
"""
