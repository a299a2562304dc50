"""What runs on every host under the launcher: the agent, its event protocol, process ancestry, reaping,
the host probe, rank variables and torchrun's failure table.

Stdlib only (a test keeps it so): these modules start in tens of milliseconds on any host, with any
Python that can run the payload, and never import torch.
"""
