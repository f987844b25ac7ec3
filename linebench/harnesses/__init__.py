"""linebench inside the evaluation harnesses people already run: lmms-eval and VLMEvalKit.

- `rows`: a linebench folder (generated, a release, or `linebench maps` output) as the few columns a
  harness needs, and one row's verdict by `linebench score`'s own parser;
- `lmms_eval`: the functions lmms-eval's task files call (the shipped `integrations/lmms_eval/`
  and every folder `linebench export --to lmms-eval` writes);
- `vlmevalkit`: the TSV VLMEvalKit reads and the scoring its dataset class calls;
  `vlmeval_dataset` is that class (imported by VLMEvalKit, never by linebench);
- `export`: `linebench export FOLDER --to lmms-eval|vlmevalkit --out PATH`.

See docs/eval.md ("lmms-eval", "VLMEvalKit").
"""
