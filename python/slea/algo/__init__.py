"""Policy-update algorithms: advantage estimators (Rust), PPO-clip + KL loss, update step."""
