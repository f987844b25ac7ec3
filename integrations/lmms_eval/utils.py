"""lmms-eval task functions for linebench's Hub releases. The code is linebench's own
(linebench.harnesses.lmms_eval): the answers are scored by `linebench score`'s parser, imported,
never copied, so lmms-eval's accuracy equals linebench's on the same answers."""

from linebench.harnesses.lmms_eval import per_level, doc_to_text, doc_to_visual, process_docs, process_results  # noqa: F401
