"""ScopeWatch model: task table, registry, input contract, network, checkpoints, batch inference."""
