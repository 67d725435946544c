"""ScopeWatch synthesis of training data, NSS features, data sets, trainer and evaluation."""
