"""linebench's dataset class for VLMEvalKit. VLMEvalKit imports it (the one line `linebench export
--to vlmevalkit` prints, added to vlmeval/dataset/__init__.py); linebench never does, as it needs
VLMEvalKit installed.

    python run.py --model Qwen2.5-VL-7B-Instruct --data NAME --data-config "$(cat OUT/data-config.json)"

It keeps ImageBaseDataset's prompt (the image, then the question, which already says how to
answer; ImageVQADataset's would append "Answer the question using a single word or phrase") and
scores with `linebench score`'s own parser: overall and per difficulty level."""

from __future__ import annotations

import os.path as osp

import pandas as pd
from vlmeval.dataset.image_base import ImageBaseDataset
from vlmeval.smp import LMUDataRoot, dump, md5
from vlmeval.smp.file import get_intermediate_file_path

from .vlmevalkit import read_predictions, read_tsv, score_rows


class LineBench(ImageBaseDataset):
    TYPE = "VQA"
    MODALITY = "IMAGE"

    def __init__(self, dataset: str = "linebench", tsv: str | None = None, skip_noimg: bool = True):
        self.tsv = tsv  # the exported TSV (default: $LMUData/<dataset>.tsv)
        super().__init__(dataset=dataset, skip_noimg=skip_noimg)
        # ImageBaseDataset unpacks the images to img_root/<index>.png and reuses any file already
        # there: keyed to this TSV's content, a new export under the same name never shows a model
        # the old images
        self.img_root = osp.join(LMUDataRoot(), "images", f"{dataset}_{md5(self.data_path)[:12]}")

    def load_data(self, dataset):
        self.data_path = self.tsv or osp.join(LMUDataRoot(), f"{dataset}.tsv")
        return read_tsv(self.data_path)

    def evaluate(self, eval_file, **judge_kwargs):
        """Accuracy overall and per level (no judge model: the answers are parsed)."""
        table = pd.DataFrame(score_rows(self.data.to_dict("records"), read_predictions(eval_file)))
        dump(table, get_intermediate_file_path(eval_file, "_acc", "csv"))
        return table
