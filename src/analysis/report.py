"""Everything eval writes beside eval_result.json from one ``EvalAccumulator``: the per-class and confusion CSVs,
and unless ``plots`` is off ``confusion_matrix.png`` and ``worst_mistakes.png``; a picture that cannot be drawn is
logged and listed in ``notes``, it never fails the eval.
"""
import os
from dataclasses import dataclass, field

FILE_NAMES = {"per_class": "per_class.csv", "confusion_csv": "confusion_matrix.csv",
              "confusion_png": "confusion_matrix.png", "worst_mistakes": "worst_mistakes.png"}
#: the summary keys that eval_result.json holds (``src.eval_job.result_record``)
JSON_KEYS = ("classes_with_images", "macro_precision", "macro_recall", "macro_f1", "macro_top5_recall",
             "top_confused_pairs")


@dataclass
class AnalysisOutput:
    files: dict = field(default_factory=dict)     # FILE_NAMES key -> absolute path, for what was written
    notes: list = field(default_factory=list)     # why a picture is missing (also logged)
    summary: dict = field(default_factory=dict)   # EvalAccumulator.summary(), in full


def write_eval_analysis(acc, out_dir, class_names=None, image_for_index=None, plots=True, log=None):
    """Writes the analysis files of ``acc`` into ``out_dir``; returns an ``AnalysisOutput``. ``image_for_index``:
    sample index -> path / PIL image / array, for the worst-mistakes sheet."""
    from src.analysis.metrics import class_names_or_default, write_confusion_matrix_csv, write_per_class_csv

    names = class_names_or_default(class_names, acc.num_classes)
    out = AnalysisOutput(summary=acc.summary(names))
    out.files["per_class"] = write_per_class_csv(acc.per_class(names), os.path.join(out_dir, FILE_NAMES["per_class"]))
    out.files["confusion_csv"] = write_confusion_matrix_csv(acc.matrix, names,
                                                            os.path.join(out_dir, FILE_NAMES["confusion_csv"]))

    def note(message):
        out.notes.append(message)
        if log is not None:
            log.info(message)

    if not plots:
        note("no_plots is set: confusion_matrix.png and worst_mistakes.png are not drawn")
        return out
    from src.analysis.plots import (contact_sheet, mistake_caption, plot_confusion_matrix,
                                    plotting_unavailable_reason)

    reason = plotting_unavailable_reason()
    if reason:
        note(reason)
    else:
        try:
            out.files["confusion_png"] = plot_confusion_matrix(
                acc.matrix, names, os.path.join(out_dir, FILE_NAMES["confusion_png"]))
        except Exception as err:  # a picture must never fail the evaluation
            note(f"confusion_matrix.png not drawn: {type(err).__name__}: {err}")
    if not acc.worst_n:
        return out
    mistakes = acc.worst_mistakes()
    if not mistakes:
        note("no wrong prediction: worst_mistakes.png is not drawn")
        return out
    if image_for_index is None:
        note("no image lookup given: worst_mistakes.png is not drawn")
        return out
    try:
        images = [image_for_index(m.index) for m in mistakes]
        captions = [mistake_caption(names[m.true], names[m.predicted], m.confidence) for m in mistakes]
        out.files["worst_mistakes"] = contact_sheet(
            images, captions, os.path.join(out_dir, FILE_NAMES["worst_mistakes"]),
            title=f"{len(mistakes)} most confident mistakes of {acc.total} images")
    except Exception as err:
        note(f"worst_mistakes.png not drawn: {type(err).__name__}: {err}")
    return out
