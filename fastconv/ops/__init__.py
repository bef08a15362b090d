"""The functional ops on ndarrays, one package or module per concern.

``ops.conv``: conv2d and its gradients (validate -> select a plan once -> run it).
"""
