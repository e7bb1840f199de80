"""Render a report notebook: papermill executes it with a sweep's parameters, nbconvert writes Markdown.

Notebooks are jupytext percent-format ``.py`` files (reviewable diffs) with a cell tagged ``parameters``. The
rendered ``report.md`` holds the outputs only (``exclude_input``: a reader sees tables and plots, not code); the
notebook saves its figures as PNGs beside it; the executed notebook is kept as ``report.ipynb`` for whoever wants
the code next to its output.
"""

from __future__ import annotations

from pathlib import Path

from xcomp.errors import XCompError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
"""The project's report notebooks (a source checkout's ``notebooks/``)."""


def notebook_path(notebook: str) -> Path:
    """``notebooks/<notebook>.py``, or the path given."""
    path = Path(notebook) if notebook.endswith(".py") else NOTEBOOKS / f"{notebook}.py"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in NOTEBOOKS.glob("*.py"))) or "none"
        raise XCompError(f"no report notebook {path} (notebooks here: {known})")
    return path


def absolute_uri(tracking_uri: str) -> str:
    """A relative SQLite store made absolute: the notebook runs in its output folder, not where it was asked for."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not tracking_uri.startswith(prefix + "/"):
        return prefix + str(Path(tracking_uri[len(prefix) :]).resolve())
    return tracking_uri


def render(notebook: str, output_dir: str | Path, parameters: dict) -> Path:
    """Execute ``notebook`` with ``parameters`` (plus ``output_dir``) and write ``output_dir/report.md``."""
    import jupytext
    import nbformat
    import papermill
    from nbconvert import MarkdownExporter

    source = notebook_path(notebook)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / "report.ipynb"
    nbformat.write(jupytext.read(source), executed)
    try:
        papermill.execute_notebook(
            str(executed), str(executed),
            parameters={**parameters, "tracking_uri": absolute_uri(parameters["tracking_uri"]),
                        "output_dir": str(output_dir.resolve())},
            kernel_name="python3", progress_bar=False, cwd=str(output_dir),
        )  # fmt: skip
    except papermill.PapermillExecutionError as error:
        raise XCompError(f"report notebook {source.name} failed: {error.ename}: {error.evalue}") from None
    node = nbformat.read(executed, as_version=4)
    for cell in node.cells:  # library warnings printed while it ran are not part of the report
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    node = nbformat.reads(relative(nbformat.writes(node)), as_version=4)
    nbformat.write(node, executed)
    exporter = MarkdownExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(node)
    report = output_dir / "report.md"
    report.write_text(body.strip() + "\n")
    return report


def relative(text: str) -> str:
    """``text`` with the paths of this machine's project (the working directory, the repository) written relative
    to it (``sqlite:////home/me/xcomp/mlflow.db`` -> ``sqlite:///mlflow.db``): a committed report names no machine."""
    for root in dict.fromkeys([Path.cwd().resolve(), NOTEBOOKS.parent]):
        text = text.replace(f"{root}/", "").replace(str(root), ".")
    return text
