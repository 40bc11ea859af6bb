"""What a run reports: results and comparisons (and the per-language dev scalars), run records, figures,
significance, aggregation. Results side only: nothing here imports torch, transformers or the model-side modules
when it is imported (the Trainer callbacks and the `--report_to` check are in `alsace.tracking`)."""
