"""Demo settings small enough for tests: same pipeline, toy sizes."""

from pai_ros.demo.assets import DemoSettings
from pai_ros.demo.learning_gate import LearningGate
from pai_ros.demo.train import TrainSettings
from pai_ros.sim.scene import SceneConfig

TOY = DemoSettings(
    scene=SceneConfig(front_hw=(64, 80), wrist_hw=(64, 80), episode_length=10),
    train_episodes=2, heldout_episodes=2,
    training=TrainSettings(steps=4, batch_size=4, dim_model=32, n_heads=2, dim_feedforward=64,
                           n_encoder_layers=1, n_vae_encoder_layers=1, chunk_size=5, n_action_steps=5,
                           log_freq=2, num_workers=0),
    gate=LearningGate(attempts=2),  # 4 steps never learn the task: every toy build exercises one retraining
)
