"""The smallest distributed job: join a gloo process group, barrier, leave. Measures launch cost."""

import torch.distributed as dist

dist.init_process_group("gloo")
dist.barrier()
dist.destroy_process_group()
