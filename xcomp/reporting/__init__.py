"""Reports from MLflow: a sweep's child runs as tables (`sweep`), rendered by a notebook into Markdown (`render`)."""
