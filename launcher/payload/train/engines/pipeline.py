"""DeepSpeed pipeline parallelism: the model as a PipelineModule of layers, trained with train_batch."""

from __future__ import annotations

import deepspeed
import torch
from deepspeed.pipe import PipelineModule

from ..pipeline_model import layers_of, lm_loss
from . import params_digest
from .deepspeed import DeepSpeedEngine


class PipelineEngine(DeepSpeedEngine):
    """The model as a DeepSpeed PipelineModule of its layers, trained with ``train_batch``."""

    identical_replicas = False  # each stage holds different layers

    def __init__(self, config: dict, model: torch.nn.Module, context):
        p = config["pipeline"]
        module = PipelineModule(layers=layers_of(model), num_stages=p["stages"], loss_fn=lm_loss,
                                partition_method=p["partition"],
                                activation_checkpoint_interval=p["activation_checkpoint_interval"])
        self.engine, *_ = deepspeed.initialize(model=module, model_parameters=module.parameters(), config=config)
        self.data_parallel_rank = self.engine.grid.get_data_parallel_rank()
        self.data_parallel_size = self.engine.grid.get_data_parallel_world_size()
        self.batches = context.batches(self.data_parallel_rank, self.data_parallel_size)

    def train_step(self, step: int) -> float:
        micro_batches = (self.batches.get(step, m) for m in range(self.engine.gradient_accumulation_steps()))
        return float(self.engine.train_batch(data_iter=micro_batches))

    def digest(self) -> str:
        return params_digest(self.engine.module.named_parameters())
