"""What a run reports: results and comparisons, run records, figures, significance, aggregation, tracking."""
