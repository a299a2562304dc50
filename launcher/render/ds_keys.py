"""Every top-level key DeepSpeed's config reads (DeepSpeed 0.19.8).

DeepSpeed ignores unknown top-level keys, so a misspelled ``zero_optimisation`` silently trains
without ZeRO. This frozen list lets ``render`` catch that without importing deepspeed;
``tests/test_ds_keys.py`` re-derives it from the installed DeepSpeed by recording which keys
``DeepSpeedConfig`` looks up, so the list cannot drift from the engine.
"""

TOP_LEVEL_KEYS = frozenset({
    "activation_checkpointing", "aio", "amp", "autotuning", "bf16", "bfloat16", "checkpoint", "comet",
    "comms_logger", "communication_data_type", "compile", "compression_training", "csv_monitor",
    "curriculum_learning", "data_efficiency", "data_types", "dataloader_drop_last", "datastates_ckpt",
    "disable_allgather", "disable_python_gc", "dump_state", "eigenvalue", "elasticity", "expert_parallel",
    "flops_profiler", "fp16", "gradient_accumulation_steps", "gradient_allreduce_op", "gradient_clipping",
    "gradient_predivide_factor", "graph_harvesting", "hybrid_engine", "log_level",
    "managed_gradient_accumulation", "memory_breakdown", "nebula", "optimizer", "pipeline",
    "prescale_gradients", "progressive_layer_drop", "quantize_training", "scheduler",
    "seq_parallel_communication_data_type", "sequence_parallel_size", "sparse_attention", "sparse_gradients",
    "steps_per_print", "tensor_parallel", "tensorboard", "timers", "torch_autocast", "train_batch_size",
    "train_micro_batch_size_per_gpu", "use_data_before_expert_parallelism", "vocabulary_size",
    "wall_clock_breakdown", "wandb", "weight_quantization", "zero_allow_untested_optimizer",
    "zero_force_ds_cpu_optimizer", "zero_optimization",
})

# Keys the pipeline engine reads from the "pipeline" section (DeepSpeed accepts any key there).
PIPELINE_KEYS = frozenset({
    "stages", "partition", "seed_layers", "activation_checkpoint_interval", "pipe_partitioned",
    "grad_partitioned", "use_reentrant",
})

# Keys the render owns: set them through the strategy (training.*), never through `deepspeed:`.
SOLVED_KEYS = frozenset({"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"})
