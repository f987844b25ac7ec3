"""Triton kernels only; linebench/klal.py is their one caller."""
