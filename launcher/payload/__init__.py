"""The torch side: what launchdeck runs inside torchrun (the training payload, the doctor's all-reduce)
and torchrun's per-rank log plugin. The only package that imports torch, DeepSpeed or Horovod at
module level; nothing on the CLI's fast paths imports it.
"""
